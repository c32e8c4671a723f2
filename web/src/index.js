// @ts-check
/** tokenwire browser client: the public entry point of the package. */
export { applyOp, applyOps, canonicalMessage, emptyMessage, toCanonicalJson } from "./model.js";
export {
  Cursor,
  GatewayError,
  Subscription,
  cancelStream,
  createStream,
  getSnapshot,
  listModels,
  subscribe,
} from "./client.js";
export { SseParser } from "./sse.js";
export { boundaries, createMarkdown, splitStable, stableBoundary } from "./markdown.js";
export { MessageView, NaiveView, frameScheduler } from "./render.js";
