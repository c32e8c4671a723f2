// A useChat page (the real @ai-sdk/react hook, `resume: true`) on the tokenwire gateway's
// AI SDK routes. The chat id comes from ?chat=; the page state is rendered as JSON in #state
// for the browser test (web/test-views/usechat-browser.mjs) to read.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { createRoot } from 'react-dom/client';

const params = new URLSearchParams(location.search);
const chatId = params.get('chat') ?? 'chat';
const api = `${location.origin}/v1/aisdk/chat`;
const transport = new DefaultChatTransport({
  api,
  prepareSendMessagesRequest: ({ id, messages, trigger, messageId }) => ({
    body: {
      id,
      messages,
      trigger,
      messageId,
      model: params.get('model') ?? 'mock',
      mock: { tps: Number(params.get('tps') ?? 100) },
    },
  }),
});

function Chat() {
  const { messages, sendMessage, stop, status, error } = useChat({ id: chatId, transport, resume: true });
  // Stop for every tab and worker: cancel the generation, then stop this tab's reading.
  const cancel = () => fetch(`${api}/${encodeURIComponent(chatId)}/stop`, { method: 'POST' }).then(() => stop());
  return (
    <main>
      <button id="send" onClick={() => sendMessage({ text: 'hi' })}>send</button>
      <button id="stop" onClick={cancel}>stop</button>
      <pre id="state">{JSON.stringify({ status, error: error ? String(error) : null, messages })}</pre>
    </main>
  );
}

createRoot(document.getElementById('root')).render(<Chat />);
