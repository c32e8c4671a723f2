// @ts-check
/** tokenwire browser client: the public entry point of the package. */
export {
  applyOp,
  applyOps,
  canonicalBlock,
  canonicalMessage,
  emptyMessage,
  streamKey,
  toCanonicalJson,
} from "./model.js";
export {
  Cursor,
  GatewayError,
  Subscription,
  cancelStream,
  createStream,
  eventsUrl,
  getSnapshot,
  listModels,
  subscribe,
  websocketUrl,
} from "./client.js";
export { SseParser } from "./sse.js";
export { boundaries, createMarkdown, splitStable, stableBoundary } from "./markdown.js";
export { MessageView, NaiveView, TransientStatus, dataText, frameScheduler } from "./render.js";
