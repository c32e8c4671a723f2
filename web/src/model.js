// @ts-check
/**
 * The message model: applying ops to an empty message, mirroring tokenwire.protocol in Python.
 *
 * Objects are always built with their keys in the canonical order of docs/protocol.md, so
 * `JSON.stringify(message)` is byte-identical to Python's canonical message JSON.
 * Unknown op types and unknown fields are ignored (forward compatibility).
 */

/**
 * @typedef {{type: "text" | "reasoning" | "refusal", choice?: number, text: string}} TextBlock
 * @typedef {{type: "tool_call", choice?: number, id: string | null, name: string | null, arguments: string}} ToolCallBlock
 * @typedef {{type: "image", choice?: number, url: string}} ImageBlock
 * @typedef {{type: "source", choice?: number, url: string, title: string | null}} SourceBlock
 * @typedef {{type: string, choice?: number, text?: string, [key: string]: any}} OtherBlock
 *   A block type this client does not know: its fields as sent (a `text` field takes deltas).
 * @typedef {TextBlock | ToolCallBlock | ImageBlock | SourceBlock} KnownBlock
 * @typedef {KnownBlock | OtherBlock} Block
 * @typedef {{message: string, type: string | null, code: string | number | null}} ErrorInfo
 * @typedef {"in_progress" | "completed" | "cancelled" | "failed"} Status
 * @typedef {{
 *   id: string | null,
 *   model: string | null,
 *   status: Status,
 *   finish_reason: string | null,
 *   usage: Record<string, unknown> | null,
 *   error: ErrorInfo | null,
 *   blocks: Block[],
 * }} Message
 * @typedef {{type: string, seq?: number, [key: string]: any}} Op
 */

/** Block types whose `block.delta` appends to `text`. */
const TEXT_TYPES = new Set(["text", "reasoning", "refusal"]);

/**
 * A fresh message, as before `message.start`.
 * @param {string | null} [id]
 * @param {string | null} [model]
 * @returns {Message}
 */
export function emptyMessage(id = null, model = null) {
  return {
    id,
    model,
    status: "in_progress",
    finish_reason: null,
    usage: null,
    error: null,
    blocks: [],
  };
}

/**
 * @param {any} value
 * @returns {string | null}
 */
function strOrNull(value) {
  return typeof value === "string" ? value : null;
}

/**
 * @param {any} value
 * @returns {string}
 */
function str(value) {
  return typeof value === "string" ? value : "";
}

/**
 * Normalizes a block from the wire (`block.start` or a snapshot) to canonical key order.
 * A block of a type this client does not know keeps its fields as sent, `text` last (as
 * Python's `Block` does), so a live view and a snapshot of it agree; renderers skip it.
 * Returns null for something that is not a block at all.
 * @param {any} raw
 * @returns {Block | null}
 */
export function canonicalBlock(raw) {
  if (!raw || typeof raw !== "object") return null;
  const type = raw.type;
  /** @type {Record<string, any>} */
  const block = { type };
  if (typeof raw.choice === "number" && raw.choice > 0) block.choice = raw.choice;
  if (TEXT_TYPES.has(type)) {
    block.text = str(raw.text);
  } else if (type === "tool_call") {
    block.id = strOrNull(raw.id);
    block.name = strOrNull(raw.name);
    block.arguments = str(raw.arguments);
  } else if (type === "image") {
    block.url = str(raw.url);
  } else if (type === "source") {
    block.url = str(raw.url);
    block.title = strOrNull(raw.title);
  } else if (typeof type === "string") {
    for (const [key, value] of Object.entries(raw)) {
      if (key !== "type" && key !== "choice" && key !== "text") block[key] = value;
    }
    if ("text" in raw) block.text = str(raw.text);
  } else {
    return null;
  }
  return /** @type {Block} */ (block);
}

/**
 * @param {any} raw
 * @returns {ErrorInfo | null}
 */
function canonicalError(raw) {
  if (!raw || typeof raw !== "object") return null;
  const code = typeof raw.code === "string" || typeof raw.code === "number" ? raw.code : null;
  return { message: str(raw.message), type: strOrNull(raw.type), code };
}

/**
 * Normalizes a whole message (a snapshot's `message` or the snapshot endpoint's) to canonical form.
 * @param {any} raw
 * @returns {Message}
 */
export function canonicalMessage(raw) {
  const message = emptyMessage(strOrNull(raw?.id), strOrNull(raw?.model));
  if (typeof raw?.status === "string") message.status = /** @type {Status} */ (raw.status);
  message.finish_reason = strOrNull(raw?.finish_reason);
  message.usage = raw?.usage && typeof raw.usage === "object" ? raw.usage : null;
  message.error = canonicalError(raw?.error);
  for (const item of Array.isArray(raw?.blocks) ? raw.blocks : []) {
    const block = canonicalBlock(item);
    // Keep indexes aligned with the server even for a block type we cannot show.
    message.blocks.push(block ?? { type: "text", text: "" });
  }
  return message;
}

/**
 * Applies one op to `message` in place. Returns the message to use from now on: the same object,
 * except for a `snapshot`, which replaces it.
 * @param {Message} message
 * @param {Op} op
 * @returns {Message}
 */
export function applyOp(message, op) {
  switch (op.type) {
    case "message.start":
      message.id = strOrNull(op.id);
      message.model = strOrNull(op.model);
      break;
    case "block.start": {
      const block = canonicalBlock(op.block);
      // Something unreadable still occupies its index, so later indexes stay aligned.
      message.blocks[op.index] = block ?? { type: "text", text: "" };
      break;
    }
    case "block.delta": {
      // A delta without `index` extends the newest block.
      const block = message.blocks[typeof op.index === "number" ? op.index : message.blocks.length - 1];
      if (!block || typeof op.text !== "string") break;
      if (block.type === "tool_call") block.arguments += op.text;
      else if ("text" in block) block.text += op.text;
      break;
    }
    case "message.end":
      message.status = /** @type {Status} */ (op.status);
      message.finish_reason = strOrNull(op.finish_reason);
      message.usage = op.usage && typeof op.usage === "object" ? op.usage : null;
      message.error = canonicalError(op.error);
      break;
    case "snapshot":
      return canonicalMessage(op.message);
    default:
      // block.end changes no state; unknown op types are ignored.
      break;
  }
  return message;
}

/**
 * Applies a sequence of ops to an empty message.
 * @param {Iterable<Op>} ops
 * @returns {Message}
 */
export function applyOps(ops) {
  let message = emptyMessage();
  for (const op of ops) message = applyOp(message, op);
  return message;
}

/**
 * The canonical JSON of a message (byte-identical to Python's `Message.to_json()` once UTF-8 encoded).
 * @param {Message} message
 * @returns {string}
 */
export function toCanonicalJson(message) {
  return JSON.stringify(message);
}
