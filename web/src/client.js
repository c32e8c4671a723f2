// @ts-check
/**
 * Browser (and Node >= 20) client for the tokenwire gateway: create a stream, follow its op log
 * over SSE with exact resume after any drop, take a snapshot, cancel.
 */
import { applyOp, emptyMessage } from "./model.js";
import { SseParser } from "./sse.js";

/**
 * @typedef {import("./model.js").Message} Message
 * @typedef {import("./model.js").Op} Op
 * @typedef {"connecting" | "open" | "reconnecting" | "done" | "closed" | "error"} ConnectionState
 */

/** An HTTP answer the client cannot recover from by retrying (bad request, unknown stream...). */
export class GatewayError extends Error {
  /**
   * @param {string} message
   * @param {number} status
   */
  constructor(message, status) {
    super(message);
    this.name = "GatewayError";
    this.status = status;
  }
}

/**
 * @param {string} base
 * @param {string} path
 */
function url(base, path) {
  return base.replace(/\/+$/, "") + path;
}

/**
 * @param {Response} response
 * @returns {Promise<never>}
 */
async function fail(response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = body?.error?.message ?? body?.detail ?? JSON.stringify(body);
  } catch {
    detail = response.statusText;
  }
  throw new GatewayError(`HTTP ${response.status}: ${detail}`, response.status);
}

/**
 * Starts a generation. `body` is an OpenAI chat-completions request.
 * @param {string} base gateway base URL ("" for same origin)
 * @param {Record<string, unknown>} body
 * @returns {Promise<{id: string, status: string, events_url: string}>}
 */
export async function createStream(base, body) {
  const response = await fetch(url(base, "/v1/streams"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) return fail(response);
  return response.json();
}

/**
 * The stream's current state.
 * @param {string} base
 * @param {string} id
 * @returns {Promise<{id: string, status: string, seq: number, message: Message}>}
 */
export async function getSnapshot(base, id) {
  const response = await fetch(url(base, `/v1/streams/${encodeURIComponent(id)}`));
  if (!response.ok) return fail(response);
  return response.json();
}

/**
 * Asks the gateway to cancel the generation; the stream then ends with status "cancelled".
 * @param {string} base
 * @param {string} id
 * @returns {Promise<unknown>}
 */
export async function cancelStream(base, id) {
  const response = await fetch(url(base, `/v1/streams/${encodeURIComponent(id)}/cancel`), {
    method: "POST",
  });
  if (!response.ok) return fail(response);
  return response.json().catch(() => null);
}

/**
 * Model ids the gateway relays from its upstream (OpenAI list format).
 * @param {string} base
 * @returns {Promise<string[]>}
 */
export async function listModels(base) {
  const response = await fetch(url(base, "/v1/models"));
  if (!response.ok) return fail(response);
  const body = await response.json();
  return (Array.isArray(body?.data) ? body.data : []).map((/** @type {any} */ m) => String(m.id));
}

/**
 * Decides what to do with each op received, given the last seq applied. Kept apart from the I/O
 * so the resume rules are unit-testable.
 */
export class Cursor {
  /** @param {number} [after] last seq already applied (0 = nothing yet) */
  constructor(after = 0) {
    this.seq = after;
  }

  /**
   * "apply": the next op (or a snapshot that moves us forward); "skip": already applied;
   * "gap": something is missing, so the caller must reconnect from `seq`.
   * @param {Op} op
   * @returns {"apply" | "skip" | "gap"}
   */
  accept(op) {
    if (typeof op.seq !== "number") return "gap";
    if (op.seq <= this.seq) return "skip";
    if (op.type !== "snapshot" && op.seq !== this.seq + 1) return "gap";
    this.seq = op.seq;
    return "apply";
  }
}

/**
 * @typedef {{
 *   after?: number,
 *   message?: Message,
 *   onOp?: (op: Op, message: Message) => void,
 *   onState?: (state: ConnectionState, detail?: unknown) => void,
 *   onBytes?: (n: number) => void,
 *   retryMs?: number,
 *   maxRetryMs?: number,
 *   fetch?: typeof fetch,
 * }} SubscribeOptions
 */

/**
 * A live subscription to one stream's ops. Reconnects with `Last-Event-ID` / `?after=` from the
 * last applied seq whenever the connection drops, until `message.end` or `close()`.
 */
export class Subscription {
  /**
   * @param {string} base
   * @param {string} id
   * @param {SubscribeOptions} [options]
   */
  constructor(base, id, options = {}) {
    this.base = base;
    this.id = id;
    this.options = options;
    this.cursor = new Cursor(options.after ?? 0);
    /** @type {Message} */
    this.message = options.message ?? emptyMessage(id);
    /** @type {ConnectionState} */
    this.state = "connecting";
    this.opsApplied = 0;
    this.bytesReceived = 0;
    this.connections = 0;
    this.controller = new AbortController();
    /** Aborts only the current connection (see `reconnect`). */
    this.connection = new AbortController();
    this.closed = false;
    /** @type {Promise<Message>} resolves with the final message, rejects on a fatal error */
    this.done = this.run();
    // A caller that only uses callbacks should not see an unhandled rejection.
    this.done.catch(() => {});
  }

  /** Last seq applied. */
  get seq() {
    return this.cursor.seq;
  }

  /**
   * Drops the current connection and resumes on a new one from the last seq, e.g. when the
   * network comes back (`online` event) and the old connection may be silently dead.
   */
  reconnect() {
    this.connection.abort();
  }

  /** Stops following the stream (does not cancel the generation; see `cancelStream`). */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.controller.abort();
    this.setState("closed");
  }

  /**
   * @param {ConnectionState} state
   * @param {unknown} [detail]
   */
  setState(state, detail) {
    if (this.state === state && detail === undefined) return;
    this.state = state;
    this.options.onState?.(state, detail);
  }

  /** @returns {Promise<Message>} */
  async run() {
    if (this.message.status !== "in_progress") {
      // Resumed from a snapshot of a stream that has already ended: nothing to follow.
      this.setState("done");
      return this.message;
    }
    const doFetch = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    const baseDelay = this.options.retryMs ?? 250;
    const maxDelay = this.options.maxRetryMs ?? 5000;
    let delay = baseDelay;
    while (!this.closed) {
      const seqBefore = this.seq;
      try {
        const ended = await this.connect(doFetch);
        if (ended) {
          this.setState("done");
          return this.message;
        }
      } catch (error) {
        if (this.closed) break;
        if (error instanceof GatewayError) {
          this.setState("error", error);
          throw error;
        }
      }
      if (this.closed) break;
      // Progress on this connection means the server is healthy: retry quickly.
      if (this.seq > seqBefore) delay = baseDelay;
      this.setState("reconnecting");
      await sleep(delay, this.controller.signal);
      delay = Math.min(delay * 2, maxDelay);
    }
    return this.message;
  }

  /**
   * One connection: reads events until the stream ends (true) or the connection drops (false).
   * @param {typeof fetch} doFetch
   * @returns {Promise<boolean>}
   */
  async connect(doFetch) {
    const after = this.seq;
    const query = after > 0 ? `?after=${after}` : "";
    /** @type {Record<string, string>} */
    const headers = { accept: "text/event-stream" };
    if (after > 0) headers["last-event-id"] = String(after);
    this.setState(this.connections === 0 ? "connecting" : "reconnecting");
    this.connection = new AbortController();
    const signal = AbortSignal.any
      ? AbortSignal.any([this.controller.signal, this.connection.signal])
      : this.controller.signal;
    const response = await doFetch(
      url(this.base, `/v1/streams/${encodeURIComponent(this.id)}/events${query}`),
      { headers, signal, cache: "no-store" },
    );
    if (!response.ok) {
      if (response.status >= 500 || response.status === 429) return false;
      return fail(response);
    }
    // 204: the stream has ended and we already hold everything up to its last seq.
    if (response.status === 204) return true;
    if (!response.body) return false;
    this.connections += 1;
    this.setState("open");
    const parser = new SseParser();
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false;
        this.bytesReceived += value.byteLength;
        this.options.onBytes?.(value.byteLength);
        for (const event of parser.feed(value)) {
          if (event.event !== "message" || !event.data) continue;
          /** @type {Op} */
          let op;
          try {
            op = JSON.parse(event.data);
          } catch {
            return false; // a corrupt event: resume from the last good seq
          }
          // The event id is the op's seq; deltas carry none of their own.
          if (typeof op.seq !== "number" && event.id !== null && /^\d+$/.test(event.id)) {
            op.seq = Number(event.id);
          }
          const verdict = this.cursor.accept(op);
          if (verdict === "skip") continue;
          if (verdict === "gap") return false;
          this.message = applyOp(this.message, op);
          this.opsApplied += 1;
          this.options.onOp?.(op, this.message);
          if (op.type === "message.end") return true;
          // A snapshot of an ended stream (its op log expired) is the end too.
          if (op.type === "snapshot" && this.message.status !== "in_progress") return true;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }
}

/**
 * Follows a stream's ops; see `Subscription`.
 * @param {string} base
 * @param {string} id
 * @param {SubscribeOptions} [options]
 */
export function subscribe(base, id, options) {
  return new Subscription(base, id, options);
}

/**
 * @param {number} ms
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
