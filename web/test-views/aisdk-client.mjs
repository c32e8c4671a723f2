// Reads tokenwire's AI SDK view with the `ai` package itself (no imitation): a tiny
// 127.0.0.1 HTTP server plays back frames produced by the Python view, and the AI SDK's own
// DefaultChatTransport / readUIMessageStream / AbstractChat consume them.
//
// Usage: node test-views/aisdk-client.mjs scenarios.json  -> prints {name: result} as JSON.
// A scenario: {name, mode: "transport" | "chat" | "reconnect", post: [frame, ...],
// cut: bool (drop the POST connection after its frames), resume: [frame, ...] | null
// (what GET {api}/{chatId}/stream answers; null -> 204)}. Mode "workflow" uses
// WorkflowChatTransport: the POST answer names the run (x-workflow-run-id) and
// GET {api}/{runId}/stream?startIndex=N answers byStart[N] with x-workflow-stream-tail-index.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { AbstractChat, DefaultChatTransport, readUIMessageStream } from 'ai';


const scenarios = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// @ai-sdk/workflow is optional (and slow to load): imported only when a scenario needs it.
const workflow = scenarios.some(s => s.mode === 'workflow')
  ? await import('@ai-sdk/workflow').catch(() => null)
  : null;
const byChat = new Map(scenarios.map(s => [s.name, s]));
const headers = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache',
  'x-vercel-ai-ui-message-stream': 'v1',
};
const requests = [];

const server = createServer((req, res) => {
  let body = '';
  req.on('data', c => (body += c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://x');
    const resume = url.pathname.match(/^\/api\/chat\/([^/]+)\/stream$/);
    if (req.method === 'POST' && url.pathname === '/api/chat') {
      const sent = JSON.parse(body);
      requests.push({ method: 'POST', id: sent.id, trigger: sent.trigger });
      const s = byChat.get(sent.runName ?? sent.id);
      res.writeHead(200, s.mode === 'workflow' ? { ...headers, 'x-workflow-run-id': s.name } : headers);
      for (const frame of s.post) res.write(frame);
      if (s.cut) {
        // A dropped connection mid-answer (the worker died, the network blinked).
        setTimeout(() => res.socket.destroy(), 20);
      } else {
        res.end();
      }
    } else if (req.method === 'GET' && resume) {
      const id = decodeURIComponent(resume[1]);
      const startIndex = url.searchParams.get('startIndex');
      requests.push({ method: 'GET', id, startIndex });
      const s = byChat.get(id);
      if (s && s.mode === 'workflow') {
        res.writeHead(200, { ...headers, 'x-workflow-stream-tail-index': String(s.tail) });
        for (const frame of s.byStart[startIndex]) res.write(frame);
        res.end();
        return;
      }
      if (!s || s.resume == null) {
        res.writeHead(204);
        res.end();
        return;
      }
      res.writeHead(200, headers);
      for (const frame of s.resume) res.write(frame);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
});

await new Promise(r => server.listen(0, '127.0.0.1', r));
const api = `http://127.0.0.1:${server.address().port}/api/chat`;
const user = { id: 'u1', role: 'user', parts: [{ type: 'text', text: 'hi' }] };

/** The plain in-memory ChatState that @ai-sdk/react and friends wrap in their own stores. */
class MemoryState {
  status = 'ready';
  error = undefined;
  messages = [];
  pushMessage = m => void (this.messages = [...this.messages, m]);
  popMessage = () => void (this.messages = this.messages.slice(0, -1));
  replaceMessage = (i, m) => void (this.messages = this.messages.map((x, j) => (j === i ? m : x)));
  snapshot = thing => structuredClone(thing);
}

async function lastMessage(stream) {
  let last = null;
  const data = [];
  for await (const m of readUIMessageStream({ stream, onError: e => data.push(String(e)) })) {
    last = structuredClone(m);
  }
  return { message: last, errors: data };
}

const out = {};
for (const s of scenarios) {
  const transport = new DefaultChatTransport({ api });
  if (s.mode === 'transport') {
    const stream = await transport.sendMessages({
      chatId: s.name,
      messages: [user],
      trigger: 'submit-message',
      messageId: undefined,
      abortSignal: undefined,
    });
    out[s.name] = await lastMessage(stream);
  } else if (s.mode === 'workflow') {
    if (!workflow) {
      out[s.name] = { unavailable: true };
      continue;
    }
    const wf = new workflow.WorkflowChatTransport({
      api,
      prepareSendMessagesRequest: ({ messages }) => ({ body: { runName: s.name, messages } }),
      ...(s.initialStartIndex != null ? { initialStartIndex: s.initialStartIndex } : {}),
    });
    const stream =
      s.initialStartIndex != null
        ? await wf.reconnectToStream({ chatId: s.name })
        : await wf.sendMessages({
            chatId: s.name,
            messages: [user],
            trigger: 'submit-message',
            messageId: undefined,
            abortSignal: undefined,
          });
    out[s.name] = await lastMessage(stream);
  } else if (s.mode === 'reconnect') {
    const stream = await transport.reconnectToStream({ chatId: s.name });
    out[s.name] = stream == null ? { none: true } : await lastMessage(stream);
  } else {
    const transient = [];
    const state = new MemoryState();
    const chat = new (class extends AbstractChat {})({
      id: s.name,
      transport,
      state,
      onData: part => transient.push(part),
      onError: () => {},
    });
    await chat.sendMessage({ text: 'hi' });
    const statusAfterSend = chat.status;
    if (s.resume !== undefined) await chat.resumeStream();
    out[s.name] = {
      statusAfterSend,
      status: chat.status,
      messages: state.messages,
      transient,
    };
  }
}
out.__requests = requests;
server.close();
process.stdout.write(JSON.stringify(out));
