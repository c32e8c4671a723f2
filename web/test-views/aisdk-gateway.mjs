// Drives the real tokenwire gateway's AI SDK routes with the `ai` package itself (and
// @ai-sdk/workflow's WorkflowChatTransport): POST /v1/aisdk/chat, GET {api}/{chatId}/stream,
// GET {api}/{runId}/stream?startIndex=N. No imitation of either side.
//
// Usage: node test-views/aisdk-gateway.mjs config.json -> prints {name: result} as JSON.
// config: {api, scenarios: [{name, mode, body, cutAfter}]}: `body` is merged into the POST
// body (model, mock options); `cutAfter` drops the POST connection after that many bytes.
// Modes: "transport" (DefaultChatTransport.sendMessages + readUIMessageStream), "reconnect"
// (a cut POST, then DefaultChatTransport.reconnectToStream), "chat" (AbstractChat: a cut POST,
// then chat.resumeStream()), "tools" (AbstractChat: mock-agent's tool call, addToolOutput,
// sendMessage() again), "workflow" (WorkflowChatTransport: a cut POST resumes by startIndex).
import { readFileSync } from 'node:fs';
import { AbstractChat, DefaultChatTransport, readUIMessageStream } from 'ai';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { api } = config;
const runIds = [];

/** fetch that records run ids and, once, drops the POST answer after `cutAfter` bytes. */
function gatewayFetch(cutAfter) {
  let cut = false;
  return async (url, init) => {
    const res = await fetch(url, init);
    const run = res.headers.get('x-workflow-run-id');
    if (run) runIds.push(run);
    if ((init?.method ?? 'GET') !== 'POST' || cut || !cutAfter) return res;
    cut = true;
    const reader = res.body.getReader();
    let seen = 0;
    const body = new ReadableStream({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        const room = cutAfter - seen;
        seen += value.length;
        if (value.length < room) return controller.enqueue(value);
        controller.enqueue(value.slice(0, room)); // the cut may fall inside an event
        await reader.cancel();
        controller.error(new TypeError('network error: connection cut'));
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
}

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
  const errors = [];
  try {
    for await (const m of readUIMessageStream({ stream, onError: e => errors.push(String(e)) })) {
      last = structuredClone(m);
    }
  } catch (e) {
    errors.push(String(e));
  }
  return { message: last, errors };
}

const user = { id: 'u1', role: 'user', parts: [{ type: 'text', text: 'hi' }] };
const out = {};
for (const s of config.scenarios) {
  runIds.length = 0;
  const fetchImpl = gatewayFetch(s.cutAfter);
  const transport = new DefaultChatTransport({
    api,
    fetch: fetchImpl,
    prepareSendMessagesRequest: ({ id, messages, trigger, messageId }) => ({
      body: { id, messages, trigger, messageId, ...s.body },
    }),
  });
  const send = () =>
    transport.sendMessages({
      chatId: s.name,
      messages: [user],
      trigger: 'submit-message',
      messageId: undefined,
      abortSignal: undefined,
    });
  let result;
  if (s.mode === 'transport') {
    result = await lastMessage(await send());
  } else if (s.mode === 'reconnect') {
    const first = await lastMessage(await send());
    const stream = await transport.reconnectToStream({ chatId: s.name });
    const second = stream == null ? { none: true } : await lastMessage(stream);
    result = { first, second };
  } else if (s.mode === 'workflow') {
    const { WorkflowChatTransport } = await import('@ai-sdk/workflow');
    const wf = new WorkflowChatTransport({
      api,
      fetch: fetchImpl,
      prepareSendMessagesRequest: ({ messages }) => ({ body: { messages, ...s.body } }),
    });
    const stream = await wf.sendMessages({
      chatId: s.name,
      messages: [user],
      trigger: 'submit-message',
      messageId: undefined,
      abortSignal: undefined,
    });
    result = await lastMessage(stream);
  } else {
    const state = new MemoryState();
    const errors = [];
    const chat = new (class extends AbstractChat {})({
      id: s.name,
      transport,
      state,
      onError: e => errors.push(String(e)),
    });
    await chat.sendMessage({ text: 'hi' });
    const statusAfterSend = chat.status;
    if (s.mode === 'chat') {
      await chat.resumeStream();
    } else if (s.mode === 'tools') {
      const last = state.messages.at(-1);
      const call = last.parts.find(p => p.type === 'tool-get_weather');
      await chat.addToolOutput({
        tool: 'get_weather',
        toolCallId: call.toolCallId,
        output: { temperature: 21, sky: 'clear' },
      });
      await chat.sendMessage();
    }
    result = { statusAfterSend, status: chat.status, messages: state.messages, errors };
  }
  out[s.name] = { ...result, runIds: [...runIds] };
}
process.stdout.write(JSON.stringify(out));
