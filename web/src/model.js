// @ts-check
/**
 * The message model: applying ops to an empty message, mirroring tokenwire.protocol in Python.
 *
 * Objects are always built with their keys in the canonical order of docs/protocol.md, so
 * `JSON.stringify(message)` is byte-identical to Python's canonical message JSON.
 * Unknown op types and unknown fields are ignored (forward compatibility).
 */

/**
 * @typedef {{type: "text" | "refusal", choice?: number, step?: number, text: string}} TextBlock
 * @typedef {{type: "reasoning", choice?: number, step?: number, signature?: string, encrypted?: string,
 *   redacted?: boolean, text: string}} ReasoningBlock
 *   `signature`/`encrypted`/`redacted` are opaque and kept byte-exact (a host sends them back upstream).
 * @typedef {{type: "tool_call", choice?: number, step?: number, id: string | null, name: string | null, server?: boolean, arguments: string}} ToolCallBlock
 * @typedef {{type: "tool_result", choice?: number, step?: number, call_id: string, name: string | null,
 *   error?: boolean, output: string}} ToolResultBlock
 * @typedef {{type: "image", choice?: number, step?: number, url: string}} ImageBlock
 * @typedef {{block: number, start: number, end: number}} Span
 *   A cited range of text block `block`: half-open Unicode code-point offsets into its text.
 * @typedef {{type: "source", choice?: number, step?: number, url: string, title: string | null,
 *   span?: Span, cited_text?: string}} SourceBlock
 * @typedef {{type: "file", choice?: number, step?: number, url: string, media_type: string, name: string | null}} FileBlock
 * @typedef {{type: "data", choice?: number, step?: number, name: string, id: string | null, value: any}} DataBlock
 * @typedef {{type: string, choice?: number, step?: number, text?: string, [key: string]: any}} OtherBlock
 *   A block type this client does not know: its fields as sent (a `text` field takes deltas).
 * @typedef {TextBlock | ReasoningBlock | ToolCallBlock | ToolResultBlock | ImageBlock | SourceBlock |
 *   FileBlock | DataBlock} KnownBlock
 * @typedef {KnownBlock | OtherBlock} Block
 * @typedef {{message: string, type: string | null, code: string | number | null, status?: number}} ErrorInfo
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
 * @typedef {(value: any) => any} Normalize  returns `undefined` to leave the attribute out
 * @typedef {{stream: string | null, attrs: [string, Normalize][], optional: Record<string, Normalize>}} BlockSpec
 */

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

/** @type {Normalize} */
const onlyString = (value) => (typeof value === "string" ? value : undefined);
/** @type {Normalize} */
const onlyBoolean = (value) => (typeof value === "boolean" ? value : undefined);
/** @type {Normalize} */
const onlyObject = (value) =>
  value && typeof value === "object" && !Array.isArray(value) ? value : undefined;
/** @type {Normalize} */
const anyJson = (value) => (value === undefined ? null : value);

/**
 * The block types this client knows: the key their deltas append to (`stream`, serialized last),
 * the attributes every such block has (in canonical order) and the optional ones (kept in the
 * order they arrived, like the attribute dict of Python's `Block`, so a `block.update` that adds
 * one puts it where Python does: after the others, before the streamed key).
 * @type {Record<string, BlockSpec>}
 */
const SPECS = {
  text: { stream: "text", attrs: [], optional: {} },
  refusal: { stream: "text", attrs: [], optional: {} },
  reasoning: {
    stream: "text",
    attrs: [],
    optional: { signature: onlyString, encrypted: onlyString, redacted: onlyBoolean },
  },
  tool_call: {
    stream: "arguments",
    attrs: [["id", strOrNull], ["name", strOrNull]],
    optional: { server: onlyBoolean },
  },
  tool_result: {
    stream: "output",
    attrs: [["call_id", str], ["name", strOrNull]],
    optional: { error: onlyBoolean },
  },
  image: { stream: null, attrs: [["url", str]], optional: {} },
  source: {
    stream: null,
    attrs: [["url", str], ["title", strOrNull]],
    optional: { span: onlyObject, cited_text: onlyString },
  },
  file: {
    stream: null,
    attrs: [["url", str], ["media_type", str], ["name", strOrNull]],
    optional: {},
  },
  data: { stream: null, attrs: [["name", str], ["id", strOrNull], ["value", anyJson]], optional: {} },
};

/** Keys that are never attributes (and that `block.update` never changes). */
const STRUCTURAL = new Set(["type", "choice", "step"]);

/**
 * The key `block.delta` appends to for this block (null: not streamed). A block of an unknown
 * type takes deltas in its `text` field if it has one.
 * @param {Block} block
 * @returns {string | null}
 */
export function streamKey(block) {
  const spec = SPECS[block.type];
  if (spec) return spec.stream;
  return "text" in block ? "text" : null;
}

/**
 * @param {any} value
 * @returns {value is number}
 */
function positiveInt(value) {
  return typeof value === "number" && Number.isInteger(value) && value > 0;
}

/**
 * Normalizes a block from the wire (`block.start` or a snapshot) to canonical key order:
 * `type`, then `choice` and `step` (each only when not 0), the attributes, the streamed key last.
 * A block of a type this client does not know keeps its fields as sent, `text` last (as
 * Python's `Block` does), so a live view and a snapshot of it agree; renderers skip it.
 * Returns null for something that is not a block at all.
 * @param {any} raw
 * @returns {Block | null}
 */
export function canonicalBlock(raw) {
  if (!raw || typeof raw !== "object") return null;
  const type = raw.type;
  if (typeof type !== "string") return null;
  /** @type {Record<string, any>} */
  const block = { type };
  if (positiveInt(raw.choice)) block.choice = raw.choice;
  if (positiveInt(raw.step)) block.step = raw.step;
  const spec = SPECS[type];
  if (spec) {
    for (const [key, normalize] of spec.attrs) block[key] = normalize(raw[key]);
    for (const key of Object.keys(raw)) {
      const normalize = spec.optional[key];
      if (!normalize) continue;
      const value = normalize(raw[key]);
      if (value !== undefined) block[key] = value;
    }
    if (spec.stream) block[spec.stream] = str(raw[spec.stream]);
  } else {
    for (const [key, value] of Object.entries(raw)) {
      if (!STRUCTURAL.has(key) && key !== "text") block[key] = value;
    }
    if ("text" in raw) block.text = str(raw.text);
  }
  return /** @type {Block} */ (block);
}

/**
 * `block.update`: `set` shallow-merged into the block's attributes — never the streamed key,
 * `type`, `choice` or `step`. Existing keys keep their place; new ones go after them, before the
 * streamed key, as Python's `Block.update` (a `dict.update` of the attrs) does. For a known type
 * only its own attributes, normalized as `canonicalBlock` does, so a snapshot of the block reads
 * back to the same bytes (Python keeps any key as sent; producers only send these).
 * @param {Block} block
 * @param {Record<string, any>} set
 * @returns {Block} a new block object
 */
function updatedBlock(block, set) {
  const spec = SPECS[block.type];
  const streamed = streamKey(block);
  /** @type {Record<string, any>} */
  const out = {};
  for (const [key, value] of Object.entries(block)) if (key !== streamed) out[key] = value;
  for (const [key, value] of Object.entries(set)) {
    if (STRUCTURAL.has(key) || key === streamed) continue;
    if (!spec) {
      out[key] = value;
      continue;
    }
    const normalize = spec.optional[key] ?? spec.attrs.find(([name]) => name === key)?.[1];
    const normalized = normalize ? normalize(value) : undefined;
    if (normalized !== undefined) out[key] = normalized;
  }
  if (streamed !== null && streamed in block) out[streamed] = /** @type {any} */ (block)[streamed];
  return /** @type {Block} */ (out);
}

/**
 * @param {any} raw
 * @returns {ErrorInfo | null}
 */
function canonicalError(raw) {
  if (!raw || typeof raw !== "object") return null;
  const code = typeof raw.code === "string" || typeof raw.code === "number" ? raw.code : null;
  /** @type {ErrorInfo} */
  const error = { message: str(raw.message), type: strOrNull(raw.type), code };
  // (the upstream's HTTP error status, only when it answered with one: docs/protocol.md)
  if (Number.isInteger(raw.status)) error.status = raw.status;
  return error;
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
      if (block.type === "text") block.text += op.text; // the hot case, without a lookup
      else {
        const key = streamKey(block);
        if (key !== null) /** @type {any} */ (block)[key] += op.text;
      }
      break;
    }
    case "block.update": {
      const block = message.blocks[op.index];
      if (block && op.set && typeof op.set === "object" && !Array.isArray(op.set)) {
        message.blocks[op.index] = updatedBlock(block, op.set);
      }
      break;
    }
    case "step.reset": {
      // Supersede: the blocks of that step go. Only the latest step can be reset, so they are
      // the last ones (popped from the end, as Python does); later block.start indexes
      // continue from the new length.
      if (typeof op.step !== "number") break;
      const blocks = message.blocks;
      while (blocks.length > 0 && (blocks[blocks.length - 1].step ?? 0) === op.step) blocks.pop();
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
      // block.end changes no state; `transient` never touches the message (clients expose it
      // as an event); unknown op types are ignored.
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
