// @ts-check
/**
 * The demo chat page: ask, watch the answer stream block by block, stop it, reload or open a
 * second tab on `?stream=<id>` and continue exactly where the stream is.
 */
import { cancelStream, createStream, getSnapshot, listModels, subscribe } from "./client.js";
import { createMarkdown } from "./markdown.js";
import { canonicalMessage } from "./model.js";
import { MessageView, TransientStatus } from "./render.js";

/** @typedef {import("./client.js").Subscription} Subscription */

const BASE = ""; // same origin as the page
/**
 * A read token in the page's URL (`?token=`, handed out by a host backend) is sent on every call.
 * @type {import("./client.js").Auth}
 */
const AUTH = { token: new URL(location.href).searchParams.get("token") };

/** @param {string} id */
function $(id) {
  return /** @type {HTMLElement} */ (document.getElementById(id));
}

const form = /** @type {HTMLFormElement} */ ($("ask"));
const select = /** @type {HTMLSelectElement} */ (form.elements.namedItem("model"));
const stopButton = /** @type {HTMLButtonElement} */ ($("stop"));
const connection = $("connection");
const statusEl = $("status");

const markdown = createMarkdown(window);
const view = new MessageView($("answer"), { markdown, onFlush: showStats });
/** Transient app data ("searching…"): shown for a moment, never part of the answer. */
const transient = new TransientStatus($("transient"));

/** Live numbers for the stats panel. */
const stats = { bytes: 0, ops: 0, chars: 0, firstDeltaAt: 0, lastDeltaAt: 0 };

/** @type {Subscription | null} */
let current = null;

/** Test and debugging hook. */
const hook = {
  get message() {
    return current?.message ?? null;
  },
  get streamId() {
    return current?.id ?? null;
  },
  get seq() {
    return current?.seq ?? 0;
  },
  get opsApplied() {
    return stats.ops;
  },
  get bytesReceived() {
    return stats.bytes;
  },
  get state() {
    return connection.dataset.state;
  },
  get renderCount() {
    return view.renderCount;
  },
  get blockRenders() {
    return view.blockRenders;
  },
  /** true while the DOM is behind the message (a render is scheduled for the next frame) */
  get renderPending() {
    return view.pending;
  },
  get flushes() {
    return view.flushes;
  },
  /** seq of every op applied, in order (to check nothing is missing or repeated) */
  seqs: /** @type {number[]} */ ([]),
  /** the page's Markdown pipeline, so tests can compare a block with a one-shot rendering */
  renderMarkdown: (/** @type {string} */ src) => markdown.render(src),
  /** drops the live connection (the client must resume by itself) */
  dropConnection: () => current?.reconnect(),
  /** seq the page resumed from (a snapshot), 0 when it followed the stream from the start */
  resumedFrom: 0,
  /** seqs of the snapshot ops that stood for what a far-behind reconnect missed */
  snapshots: /** @type {number[]} */ ([]),
  /** every transient op received, in order ({name, value}) */
  transients: /** @type {{name: unknown, value: unknown}[]} */ ([]),
};
Object.defineProperty(window, "__tokenwire", { value: hook });

/**
 * @param {string} state
 * @param {string} [text]
 */
function setConnection(state, text) {
  connection.dataset.state = state;
  connection.textContent = text ?? state;
}

function showStats() {
  const message = current?.message;
  const usage = /** @type {any} */ (message?.usage);
  const reported = typeof usage?.completion_tokens === "number";
  // Until the upstream reports usage, estimate (about 4 characters per token).
  const tokens = reported ? usage.completion_tokens : Math.round(stats.chars / 4);
  const seconds = (stats.lastDeltaAt - stats.firstDeltaAt) / 1000;
  $("stat-tokens").textContent = reported ? String(tokens) : `≈${tokens}`;
  // Only what arrived while this page watched counts toward the rate (not a resumed snapshot).
  const watched = reported && hook.resumedFrom === 0 ? tokens : stats.chars / 4;
  $("stat-rate").textContent = seconds > 0.05 ? (watched / seconds).toFixed(1) : "–";
  $("stat-bytes").textContent = stats.bytes.toLocaleString("en");
  $("stat-ops").textContent = String(stats.ops);
  $("stat-renders").textContent = String(view.renderCount);
  if (message) {
    statusEl.dataset.status = message.status;
    statusEl.textContent =
      message.status === "failed" && message.error
        ? `failed: ${message.error.message}`
        : message.status.replace("_", " ");
    stopButton.disabled = message.status !== "in_progress";
  }
}

/**
 * Follows stream `id`, resuming after `after` with `message` as the state so far.
 * @param {string} id
 * @param {number} after
 * @param {import("./model.js").Message} [message]
 */
function follow(id, after, message) {
  // Detach the old subscription first, so its "closed" does not reach the badge, which shows
  // the new one connecting at once (before its own first "connecting" arrives).
  const previous = current;
  current = null;
  previous?.close();
  setConnection("connecting");
  view.reset();
  Object.assign(stats, { bytes: 0, ops: 0, chars: 0, firstDeltaAt: 0, lastDeltaAt: 0 });
  hook.seqs = [];
  hook.snapshots = [];
  hook.transients = [];
  hook.resumedFrom = after;
  transient.clear();
  $("answer-meta").hidden = false;
  $("stream-id").textContent = id;
  const sub = subscribe(BASE, id, {
    ...AUTH,
    after,
    message,
    onOp(op, msg) {
      if (sub !== current) return;
      stats.ops += 1;
      hook.seqs.push(op.seq ?? 0);
      if (op.type === "snapshot") hook.snapshots.push(op.seq ?? 0);
      if (op.type === "block.delta") {
        const now = performance.now();
        if (!stats.firstDeltaAt) stats.firstDeltaAt = now;
        stats.lastDeltaAt = now;
        stats.chars += op.text.length;
      }
      view.update(op, msg);
    },
    onTransient(op) {
      if (sub !== current) return;
      hook.transients.push({ name: op.name, value: op.value });
      transient.show(op);
    },
    onBytes(n) {
      stats.bytes += n;
    },
    onState(state, detail) {
      if (sub !== current) return;
      if (state === "error") {
        setConnection("error", `error: ${/** @type {Error} */ (detail).message}`);
      } else if (state === "done") {
        setConnection("done", "complete");
        transient.clear();
      } else {
        setConnection(state);
      }
      showStats();
    },
  });
  current = sub;
  if (message) {
    // Show the state we resume from right away.
    view.update({ type: "snapshot", seq: after, message }, message);
  }
  stopButton.disabled = message ? message.status !== "in_progress" : false;
}

/**
 * Opens the stream named in the URL: its snapshot first, then the ops after it.
 * @param {string} id
 */
async function resume(id) {
  setConnection("connecting");
  try {
    const snap = await getSnapshot(BASE, id, AUTH);
    follow(id, snap.seq, canonicalMessage(snap.message));
  } catch (error) {
    const status = /** @type {any} */ (error).status;
    if (status === 404) {
      setConnection("error", "unknown stream");
      return;
    }
    follow(id, 0); // no snapshot: replay the whole log instead
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const prompt = String(data.get("prompt") ?? "").trim();
  if (!prompt) return;
  setConnection("connecting");
  try {
    const created = await createStream(
      BASE,
      {
        model: String(data.get("model")),
        messages: [{ role: "user", content: prompt }],
        stream: true,
      },
      AUTH,
    );
    const url = new URL(location.href);
    url.searchParams.set("stream", created.id);
    history.pushState({ stream: created.id }, "", url);
    follow(created.id, 0);
  } catch (error) {
    setConnection("error", `error: ${/** @type {Error} */ (error).message}`);
  }
});

stopButton.addEventListener("click", async () => {
  if (!current) return;
  stopButton.disabled = true;
  try {
    await cancelStream(BASE, current.id, AUTH);
  } catch (error) {
    setConnection("error", `cancel failed: ${/** @type {Error} */ (error).message}`);
  }
});

// A connection that lived through a network change may be dead without knowing it.
window.addEventListener("online", () => current?.reconnect());

window.addEventListener("popstate", () => {
  const id = new URL(location.href).searchParams.get("stream");
  if (id && id !== current?.id) resume(id);
});

/** Fills the model select from the gateway, keeping the built-in list if that fails. */
async function loadModels() {
  try {
    const ids = await listModels(BASE, AUTH);
    if (ids.length === 0) return;
    const chosen = select.value;
    select.replaceChildren(
      ...ids.map((id) => {
        const option = document.createElement("option");
        option.value = option.textContent = id;
        return option;
      }),
    );
    if (ids.includes(chosen)) select.value = chosen;
  } catch {
    // The static list in index.html stays.
  }
}

loadModels();
const initial = new URL(location.href).searchParams.get("stream");
if (initial) resume(initial);
