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
 * Credentials for one call. `apiKey`: a gateway API key, sent as `Authorization: Bearer` on
 * fetch (never in the URL, so it stays out of access logs). `token`: a signed read token from the
 * host backend (`streams.read_token(id)`), sent as `?token=` (the gateway reads it only from the
 * query); a function is called for every request, so a long subscription can fetch a fresh one.
 * @typedef {string | null | (() => string | null | Promise<string | null>)} TokenOption
 * @typedef {{apiKey?: string | null, token?: TokenOption}} Auth
 */

/**
 * @param {string} base
 * @param {string} path
 * @param {Record<string, string | number | null | undefined>} [query]
 */
function url(base, path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const search = params.toString();
  return base.replace(/\/+$/, "") + path + (search ? `?${search}` : "");
}

/**
 * @param {Auth} [auth]
 * @returns {Promise<string | null>}
 */
async function readToken(auth) {
  const token = typeof auth?.token === "function" ? await auth.token() : auth?.token;
  return token || null;
}

/**
 * Headers for a fetch with `auth`.
 * @param {Auth | undefined} auth
 * @param {Record<string, string>} [headers]
 * @returns {Record<string, string>}
 */
function authHeaders(auth, headers = {}) {
  if (auth?.apiKey) headers.authorization = `Bearer ${auth.apiKey}`;
  return headers;
}

/**
 * A URL for `EventSource` (which cannot send headers): the stream's SSE events after seq `after`,
 * with the API key as `?api_key=` and the read token as `?token=`. Prefer `subscribe`, which
 * sends the key as a header and resumes by itself.
 * @param {string} base
 * @param {string} id
 * `catchup: "exact"` asks for every op however far behind (the default, "compact", gives a reader
 * far behind one `snapshot` op for what it missed).
 * @param {{after?: number, apiKey?: string | null, token?: string | null, catchup?: "compact" | "exact"}} [options]
 */
export function eventsUrl(base, id, options = {}) {
  return url(base, `/v1/streams/${encodeURIComponent(id)}/events`, {
    after: options.after || null,
    api_key: options.apiKey,
    token: options.token,
    catchup: options.catchup === "exact" ? "exact" : null,
  });
}

/**
 * A URL for `WebSocket` (browsers cannot set its headers): `ws(s)://` for the stream's op socket,
 * credentials in the query as for `eventsUrl`. `base` "" means the page's own origin.
 * @param {string} base
 * @param {string} id
 * @param {{apiKey?: string | null, token?: string | null}} [options]
 */
export function websocketUrl(base, id, options = {}) {
  const origin = base || globalThis.location?.origin || "";
  const http = url(origin, `/v1/streams/${encodeURIComponent(id)}/ws`, {
    api_key: options.apiKey,
    token: options.token,
  });
  return http.replace(/^http/, "ws");
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
 * @param {Auth} [auth]
 * @returns {Promise<{id: string, status: string, events_url: string}>}
 */
export async function createStream(base, body, auth) {
  const response = await fetch(url(base, "/v1/streams", { token: await readToken(auth) }), {
    method: "POST",
    headers: authHeaders(auth, { "content-type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) return fail(response);
  return response.json();
}

/**
 * The stream's current state.
 * @param {string} base
 * @param {string} id
 * @param {Auth} [auth]
 * @returns {Promise<{id: string, status: string, seq: number, message: Message}>}
 */
export async function getSnapshot(base, id, auth) {
  const response = await fetch(
    url(base, `/v1/streams/${encodeURIComponent(id)}`, { token: await readToken(auth) }),
    { headers: authHeaders(auth) },
  );
  if (!response.ok) return fail(response);
  return response.json();
}

/**
 * Asks the gateway to cancel the generation; the stream then ends with status "cancelled".
 * (A read token cannot cancel: that needs the owner's credentials.)
 * @param {string} base
 * @param {string} id
 * @param {Auth} [auth]
 * @returns {Promise<unknown>}
 */
export async function cancelStream(base, id, auth) {
  const response = await fetch(
    url(base, `/v1/streams/${encodeURIComponent(id)}/cancel`, { token: await readToken(auth) }),
    { method: "POST", headers: authHeaders(auth) },
  );
  if (!response.ok) return fail(response);
  return response.json().catch(() => null);
}

/**
 * Model ids the gateway relays from its upstream (OpenAI list format).
 * @param {string} base
 * @param {Auth} [auth]
 * @returns {Promise<string[]>}
 */
export async function listModels(base, auth) {
  const response = await fetch(url(base, "/v1/models", { token: await readToken(auth) }), {
    headers: authHeaders(auth),
  });
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
   * "apply": the next op (or a snapshot, or a merged delta, that moves us forward); "skip":
   * already applied; "gap": something is missing, so the caller must reconnect from `seq`.
   * `stated`: the op's JSON stated its seq. A `block.delta` only does so when a compacted
   * catch-up merged a run of deltas into it (its seq is the run's last), so it may jump.
   * @param {Op} op
   * @param {boolean} [stated]
   * @returns {"apply" | "skip" | "gap"}
   */
  accept(op, stated = false) {
    if (typeof op.seq !== "number") return "gap";
    if (op.seq <= this.seq) return "skip";
    const jumps = op.type === "snapshot" || (stated && op.type === "block.delta");
    if (!jumps && op.seq !== this.seq + 1) return "gap";
    this.seq = op.seq;
    return "apply";
  }
}

/**
 * @typedef {Auth & {
 *   after?: number,
 *   catchup?: "compact" | "exact",
 *   message?: Message,
 *   onOp?: (op: Op, message: Message) => void,
 *   onTransient?: (op: Op, message: Message) => void,
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
    /** Whether `onState` has been called yet (the first state is reported, even "connecting"). */
    this.stateReported = false;
    this.opsApplied = 0;
    this.bytesReceived = 0;
    this.connections = 0;
    this.controller = new AbortController();
    /** Aborts only the current connection (see `reconnect`). */
    this.connection = new AbortController();
    this.closed = false;
    /**
     * Resolves with the final message, rejects on a fatal error. No callback ever runs inside
     * this constructor (`run` starts on a microtask): the caller has the Subscription in hand
     * before its first `onState`, even for a stream that has already ended.
     * @type {Promise<Message>}
     */
    this.done = Promise.resolve().then(() => this.run());
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
    if (this.stateReported && this.state === state && detail === undefined) return;
    this.stateReported = true;
    this.state = state;
    this.options.onState?.(state, detail);
  }

  /** @returns {Promise<Message>} */
  async run() {
    if (this.closed) return this.message;
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
    const token = await readToken(this.options);
    const headers = authHeaders(this.options, { accept: "text/event-stream" });
    if (after > 0) headers["last-event-id"] = String(after);
    this.setState(this.connections === 0 ? "connecting" : "reconnecting");
    this.connection = new AbortController();
    const signal = AbortSignal.any
      ? AbortSignal.any([this.controller.signal, this.connection.signal])
      : this.controller.signal;
    const response = await doFetch(
      url(this.base, `/v1/streams/${encodeURIComponent(this.id)}/events`, {
        after: after > 0 ? after : null,
        token,
        catchup: this.options.catchup === "exact" ? "exact" : null,
      }),
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
          // Transient app data: live only, never part of the message or the seq order (its
          // seq repeats the last real op's, and its event has no id).
          if (op.type === "transient") {
            this.options.onTransient?.(op, this.message);
            continue;
          }
          // The event id is the op's seq; live deltas carry none of their own.
          const stated = typeof op.seq === "number";
          if (!stated && event.id !== null && /^\d+$/.test(event.id)) {
            op.seq = Number(event.id);
          }
          const verdict = this.cursor.accept(op, stated);
          if (verdict === "skip") {
            // A reader-only end: the gateway gave up reading for us (its Redis stayed away
            // past its grace). It states the last real seq and is not the stream's end, which
            // may well go on: say why, then resume from the last seq as after any drop.
            if (op.type === "message.end" && op.seq === this.seq) {
              this.setState("reconnecting", op.error ?? undefined);
              return false;
            }
            continue;
          }
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
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    // The listener goes when the timer fires: one per retry would pile up on the
    // subscription's signal over a long outage.
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
