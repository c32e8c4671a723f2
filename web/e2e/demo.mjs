// End-to-end checks of the demo page in real headless Chromium, against a running gateway.
//
//   node e2e/demo.mjs --base http://127.0.0.1:8787 [--case NAME ...] [--api-key KEY]
//
// The `auth` case needs a gateway started with `--api-key KEY` (and the same --api-key here);
// the `agent` cases need `tokenwire demo` (its mock-agent answer is built by the demo's host code).
// Prints one JSON line per case ({"case", "ok", "error"?, ...details}) and exits 1 if any failed.
// The page is used as a person would: type, pick a model, press Send / Stop, reload, open tabs.
// Only the request body is adjusted (mock pacing via the mock's "mock" member), so answers take
// long enough to interrupt.
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.TOKENWIRE_CHROMIUM ?? "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];
const SCENARIOS = ["mock", "mock-reasoning", "mock-tools", "mock-error", "mock-truncated", "mock-html", "mock-agent"];

const { values } = parseArgs({
  options: {
    base: { type: "string" },
    case: { type: "string", multiple: true },
    timeout: { type: "string", default: "20000" },
    "api-key": { type: "string" },
  },
});
if (!values.base) {
  console.error("usage: node e2e/demo.mjs --base URL [--case NAME ...]");
  process.exit(2);
}
const BASE = values.base.replace(/\/+$/, "");
const TIMEOUT = Number(values.timeout);

/**
 * Makes the page's stream requests ask the mock for a given pace (tokens/s) and length.
 * @param {import("playwright-core").Page} page
 * @param {{tps?: number, max_tokens?: number}} pace
 */
async function pace(page, { tps, max_tokens: maxTokens }) {
  await page.route("**/v1/streams", async (route) => {
    const request = route.request();
    if (request.method() !== "POST") return route.continue();
    const body = JSON.parse(request.postData() ?? "{}");
    if (tps !== undefined) body.mock = { ...(body.mock ?? {}), tps };
    if (maxTokens !== undefined) body.max_tokens = maxTokens;
    await route.continue({ postData: JSON.stringify(body) });
  });
}

/**
 * Like `pace`, plus the demo agent's options (`"agent": {"flaky", "pause_ms"}`).
 * @param {import("playwright-core").Page} page
 * @param {{tps?: number, agent?: object}} options
 */
async function agentOptions(page, { tps, agent }) {
  await page.route("**/v1/streams", async (route) => {
    const request = route.request();
    if (request.method() !== "POST") return route.continue();
    const body = JSON.parse(request.postData() ?? "{}");
    if (tps !== undefined) body.mock = { ...(body.mock ?? {}), tps };
    if (agent !== undefined) body.agent = agent;
    await route.continue({ postData: JSON.stringify(body) });
  });
}

/**
 * The agent answer as a reader sees it: the status line shows the latest value, the tool result
 * sits with its call, the cited spans are numbered links, and the steps are marked.
 * @param {import("playwright-core").Page} page
 */
async function assertAgentShown(page, message) {
  const shown = await page.evaluate(() => ({
    status: document.querySelector('#answer [data-block-type="data"] .data-value')?.textContent,
    output: document.querySelector('#answer [data-block-type="tool_result"] .tool-output')?.textContent,
    cites: [...document.querySelectorAll("#answer sup.cite")].map((e) => e.textContent),
    steps: [...document.querySelectorAll("#answer .step-start")].map((e) => e.dataset.blockType),
  }));
  const data = message.blocks.find((b) => b.type === "data");
  assert.ok(shown.status?.includes(data.value), `status line: ${shown.status}`);
  assert.equal(shown.output, message.blocks.find((b) => b.type === "tool_result").output);
  assert.deepEqual(shown.cites.map((c) => c.replace(/\D/g, "")), ["1", "2"]);
  assert.deepEqual(shown.steps, ["reasoning", "text"]);
}

/** @param {import("playwright-core").Page} page */
async function ask(page, model, prompt = "Tell me about streaming.") {
  await page.goto(`${BASE}/`);
  await page.waitForFunction(() => "__tokenwire" in window);
  await page.fill('textarea[name="prompt"]', prompt);
  await page.selectOption('select[name="model"]', model);
  await page.click('button[type="submit"]');
  await page.waitForURL(/[?&]stream=st_/, { timeout: TIMEOUT });
  return new URL(page.url()).searchParams.get("stream");
}

/** @param {import("playwright-core").Page} page */
async function waitStatus(page, status) {
  // ...and the DOM has caught up with the message.
  await page.waitForFunction((s) => window.__tokenwire.message?.status === s && !window.__tokenwire.renderPending, status, {
    timeout: TIMEOUT,
  });
}

/** The page's view of the stream: its message JSON, the seqs it applied, block renders. */
function hookState(page) {
  return page.evaluate(() => {
    const h = window.__tokenwire;
    return {
      json: JSON.stringify(h.message),
      seqs: h.seqs,
      resumedFrom: h.resumedFrom,
      seq: h.seq,
      snapshots: h.snapshots,
      blockRenders: h.blockRenders,
      state: h.state,
      opsApplied: h.opsApplied,
      bytes: h.bytesReceived,
    };
  });
}

/** The server's canonical message, byte for byte. */
async function serverMessage(id) {
  const response = await fetch(`${BASE}/v1/streams/${id}`);
  assert.equal(response.status, 200);
  const text = await response.text();
  const start = text.indexOf('"message":') + '"message":'.length;
  return { json: text.slice(start, -1), snapshot: JSON.parse(text) };
}

/**
 * Every seq from `from + 1` to `last`, each exactly once, in order; a page that reconnected far
 * behind may instead get one snapshot op (its seq in `snapshots`) standing for the ops it missed.
 */
function assertContiguous(seqs, from, last, snapshots = []) {
  const expected = [];
  let seq = from;
  for (const got of seqs) {
    seq = snapshots.includes(got) && got > seq ? got : seq + 1;
    expected.push(seq);
  }
  assert.deepEqual(seqs, expected);
  assert.equal(seq, last);
}

/** What the answer area shows, block by block. */
function blocksShown(page) {
  return page.$$eval("#answer > [data-block-index]", (els) =>
    els.map((e) => ({
      type: e.dataset.blockType,
      index: Number(e.dataset.blockIndex),
      // The content only, without labels such as "Reasoning".
      text: (e.querySelector(":scope > .block-body, :scope > .tool-args, :scope > .tool-output") ?? e).textContent,
      className: e.className,
    })),
  );
}

/**
 * The answer area shows exactly the message: one element per block, in order, each with exactly
 * its content (Markdown blocks: the same HTML as rendering the whole final text at once).
 * @param {import("playwright-core").Page} page
 * @param {string} messageJson
 */
async function assertShowsMessage(page, messageJson) {
  const problems = await page.evaluate((json) => {
    const message = JSON.parse(json);
    const els = [...document.querySelectorAll("#answer > [data-block-index]")];
    const out = [];
    if (els.length !== message.blocks.length) out.push(`${els.length} elements for ${message.blocks.length} blocks`);
    message.blocks.forEach((block, i) => {
      const e = els[i];
      if (!e || e.dataset.blockType !== block.type || e.dataset.blockIndex !== String(i)) {
        out.push(`block ${i}: wrong element`);
        return;
      }
      if (block.type === "text" || block.type === "reasoning") {
        // Citation links aside (added on the cited spans), the same HTML as a one-shot render.
        const html = [...e.querySelectorAll(".md-piece, .md-tail")]
          .map((p) => p.innerHTML)
          .join("")
          .replace(/<sup class="cite"[^>]*>.*?<\/sup>/g, "")
          .replace(/<div class="cite-group">.*?<\/div>/g, "");
        if (html !== window.__tokenwire.renderMarkdown(block.text)) out.push(`block ${i}: HTML differs`);
      } else if (block.type === "tool_result") {
        if (e.querySelector(".tool-output").textContent !== block.output) out.push(`block ${i}: output`);
        if (e.classList.contains("tool-error") !== Boolean(block.error)) out.push(`block ${i}: error flag`);
      } else if (block.type === "data") {
        const value = e.querySelector(".data-value").textContent;
        if (!value || e.dataset.name !== block.name) out.push(`block ${i}: data line`);
      } else if (block.type === "tool_call") {
        if (e.querySelector(".tool-args").textContent !== block.arguments) out.push(`block ${i}: arguments`);
      } else if (block.type === "refusal") {
        if (e.querySelector(".block-body").textContent !== block.text) out.push(`block ${i}: refusal`);
      }
    });
    return out;
  }, messageJson);
  assert.deepEqual(problems, []);
}

const CASES = {
  /** The model list comes from the gateway and names every mock scenario. */
  async models(browser) {
    const page = await browser.newPage();
    await page.goto(`${BASE}/`);
    await page.waitForFunction(
      (n) => document.querySelectorAll('select[name="model"] option').length >= n,
      SCENARIOS.length,
    );
    const options = await page.$$eval('select[name="model"] option', (os) => os.map((o) => o.value));
    for (const id of SCENARIOS) assert.ok(options.includes(id), `${id} missing from ${options}`);
    return { options };
  },

  /** Blocks appear and grow while the answer streams; the end result is exactly the server's. */
  async stream(browser) {
    const page = await browser.newPage();
    await pace(page, { tps: 150, max_tokens: 200 });
    const id = await ask(page, "mock-reasoning");
    await page.waitForSelector('[data-block-type="reasoning"][data-block-index="0"]', { timeout: TIMEOUT });
    // Watch the text block grow: several distinct lengths before the end.
    await page.waitForSelector('[data-block-type="text"][data-block-index="1"]', { timeout: TIMEOUT });
    const lengths = new Set();
    let reasoningFinal = null;
    while ((await page.evaluate(() => window.__tokenwire.message.status)) === "in_progress") {
      const snap = await page.evaluate(() => {
        const r = document.querySelector('[data-block-index="0"]');
        return {
          len: document.querySelector('[data-block-index="1"]').textContent.length,
          final: r.hasAttribute("data-final") ? r.outerHTML : null,
          renders: window.__tokenwire.blockRenders[0],
        };
      });
      lengths.add(snap.len);
      if (snap.final && !reasoningFinal) reasoningFinal = snap;
      await page.waitForTimeout(40);
    }
    await waitStatus(page, "completed");
    assert.ok(lengths.size >= 3, `text block grew through only ${lengths.size} sizes`);
    const server = await serverMessage(id);
    const state = await hookState(page);
    assert.equal(state.json, server.json, "page message differs from the server's canonical JSON");
    assertContiguous(state.seqs, 0, server.snapshot.seq, state.snapshots);
    await assertShowsMessage(page, server.json);
    // The reasoning block, once finished, was never rendered again.
    assert.ok(reasoningFinal, "never saw the reasoning block finished while the text streamed");
    const reasoningNow = await page.$eval('[data-block-index="0"]', (e) => e.outerHTML);
    assert.equal(reasoningNow, reasoningFinal.final);
    assert.equal(state.blockRenders[0], reasoningFinal.renders);
    // Markdown was rendered: headings, lists and code fences of the mock answer.
    const counts = await page.$eval('[data-block-index="1"]', (e) => ({
      h2: e.querySelectorAll("h2").length,
      li: e.querySelectorAll("li").length,
      pre: e.querySelectorAll("pre").length,
    }));
    assert.ok(counts.h2 >= 1 && counts.li >= 2 && counts.pre >= 1, JSON.stringify(counts));
    assert.equal(await page.$eval("#connection", (e) => e.dataset.state), "done");
    const stats = await page.$eval("#stat-ops", (e) => Number(e.textContent));
    assert.equal(stats, state.opsApplied);
    return { sizes: lengths.size, ops: state.opsApplied, bytes: state.bytes, counts };
  },

  /** Reloading mid-answer resumes: the whole answer exactly once, nothing missing or repeated. */
  async reload(browser) {
    const page = await browser.newPage();
    await pace(page, { tps: 40, max_tokens: 240 });
    const id = await ask(page, "mock-reasoning");
    await page.waitForFunction(() => window.__tokenwire.seq > 40, null, { timeout: TIMEOUT });
    await page.reload();
    await page.waitForFunction(() => window.__tokenwire?.streamId, null, { timeout: TIMEOUT });
    const resumed = await hookState(page);
    assert.ok(resumed.resumedFrom > 40, `resumed from seq ${resumed.resumedFrom}`);
    assert.equal(
      await page.evaluate(() => window.__tokenwire.message.status),
      "in_progress",
      "the answer finished before the reload: slow the mock down",
    );
    await waitStatus(page, "completed");
    const server = await serverMessage(id);
    const state = await hookState(page);
    assert.equal(state.json, server.json);
    assertContiguous(state.seqs, state.resumedFrom, server.snapshot.seq, state.snapshots);
    await assertShowsMessage(page, server.json);
    const shown = await blocksShown(page);
    // A page opened after the end shows exactly the same answer.
    const fresh = await browser.newPage();
    await fresh.goto(`${BASE}/?stream=${id}`);
    await waitStatus(fresh, "completed");
    assert.deepEqual(await blocksShown(fresh), shown);
    return { resumedFrom: state.resumedFrom, last: server.snapshot.seq };
  },

  /** Reloading on a finished stream: the badge shows the end, never stays on "connecting". */
  async finished(browser) {
    const page = await browser.newPage();
    await pace(page, { tps: 400, max_tokens: 40 });
    const id = await ask(page, "mock");
    await waitStatus(page, "completed");
    await page.reload();
    await page.waitForFunction(() => window.__tokenwire?.streamId, null, { timeout: TIMEOUT });
    await page.waitForFunction(() => document.querySelector("#connection").dataset.state !== "connecting", null, {
      timeout: 5000,
    });
    await waitStatus(page, "completed");
    const badge = await page.$eval("#connection", (e) => ({ state: e.dataset.state, text: e.textContent }));
    assert.deepEqual(badge, { state: "done", text: "complete" });
    assert.match(await page.textContent("#status"), /completed/);
    assert.equal(await page.isEnabled("#stop"), false);
    const server = await serverMessage(id);
    const state = await hookState(page);
    assert.equal(state.json, server.json);
    assert.equal(state.resumedFrom, server.snapshot.seq);
    assert.deepEqual(state.seqs, [], "nothing to follow after the end");
    await assertShowsMessage(page, server.json);
    return { badge };
  },

  /**
   * The JS client against a gateway started with --api-key: every call is a 401 without the key,
   * and works with `apiKey` (fetch: Authorization header; EventSource: ?api_key=).
   */
  async auth(browser) {
    const key = values["api-key"];
    assert.ok(key, "the auth case needs --api-key KEY (and a gateway started with it)");
    const { build } = await import("esbuild");
    const bundle = await build({
      entryPoints: [new URL("../src/client.js", import.meta.url).pathname],
      bundle: true,
      write: false,
      format: "esm",
      logLevel: "warning",
    });
    const page = await browser.newPage();
    // The client module, served from the gateway's origin (the test's own path).
    await page.route(`${BASE}/__e2e/client.js`, (route) =>
      route.fulfill({ contentType: "text/javascript", body: bundle.outputFiles[0].text }),
    );
    await page.goto(`${BASE}/healthz`);
    const result = await page.evaluate(async (apiKey) => {
      const c = await import("/__e2e/client.js");
      const status = (promise) => promise.then(() => 200, (e) => e.status ?? String(e));
      const body = { model: "mock", messages: [{ role: "user", content: "hi" }], max_tokens: 30 };
      const before = {
        models: await status(c.listModels("")),
        create: await status(c.createStream("", body)),
        wrong: await status(c.createStream("", body, { apiKey: `${apiKey}-wrong` })),
      };
      const auth = { apiKey };
      const models = await c.listModels("", auth);
      const created = await c.createStream("", body, auth);
      const noKey = await status(c.subscribe("", created.id, { retryMs: 10 }).done);
      const message = await c.subscribe("", created.id, auth).done;
      const snapshot = await c.getSnapshot("", created.id, auth);
      const snapshotNoKey = await status(c.getSnapshot("", created.id));
      // EventSource cannot send headers: the key goes in the query.
      const viaEventSource = await new Promise((resolve) => {
        const source = new EventSource(c.eventsUrl("", created.id, auth));
        const types = [];
        source.onmessage = (event) => {
          const op = JSON.parse(event.data);
          types.push(op.type);
          if (op.type === "message.end") {
            source.close();
            resolve(types);
          }
        };
        source.onerror = () => {
          source.close();
          resolve(["error", ...types]);
        };
      });
      const rejected = await new Promise((resolve) => {
        const source = new EventSource(c.eventsUrl("", created.id));
        source.onmessage = () => resolve("message");
        source.onerror = () => {
          source.close();
          resolve("error");
        };
      });
      return {
        before,
        models,
        noKey,
        message: JSON.stringify(message),
        snapshot: JSON.stringify(snapshot.message),
        snapshotNoKey,
        viaEventSource,
        rejected,
        id: created.id,
      };
    }, key);
    assert.deepEqual(result.before, { models: 401, create: 401, wrong: 401 });
    assert.ok(result.models.includes("mock"), result.models.join());
    assert.equal(result.noKey, 401);
    assert.equal(result.snapshotNoKey, 401);
    assert.equal(result.message, result.snapshot);
    assert.equal(JSON.parse(result.message).status, "completed");
    assert.equal(result.viaEventSource[0], "message.start");
    assert.equal(result.viaEventSource.at(-1), "message.end");
    assert.equal(result.rejected, "error");
    return { id: result.id, ops: result.viaEventSource.length };
  },

  /**
   * An agent answer (mock-agent): every block it sends is rendered, and a reload mid-answer
   * ends with the same rendering as a page opened after the end.
   */
  async agent(browser) {
    const page = await browser.newPage();
    await pace(page, { tps: 25 });
    const id = await ask(page, "mock-agent");
    await page.waitForFunction(() => window.__tokenwire.message?.blocks.length >= 2, null, { timeout: TIMEOUT });
    const reloadedAt = await page.evaluate(() => window.__tokenwire.seq);
    await page.reload();
    await page.waitForFunction(() => window.__tokenwire?.streamId, null, { timeout: TIMEOUT });
    await waitStatus(page, "completed");
    const server = await serverMessage(id);
    const state = await hookState(page);
    assert.ok(state.seqs.length > 0, "the answer finished before the reload: slow the mock down");
    assert.equal(state.json, server.json);
    assertContiguous(state.seqs, state.resumedFrom, server.snapshot.seq, state.snapshots);
    await assertShowsMessage(page, server.json);
    const shown = await blocksShown(page);
    const fresh = await browser.newPage();
    await fresh.goto(`${BASE}/?stream=${id}`);
    await waitStatus(fresh, "completed");
    assert.deepEqual(await blocksShown(fresh), shown);
    const message = JSON.parse(server.json);
    const types = message.blocks.map((b) => b.type);
    // The demo's agent: its status line, the model's reasoning and tool call, the tool's
    // result, then (a new step) the text citing its sources.
    assert.deepEqual(types, ["data", "reasoning", "tool_call", "tool_result", "text", "source", "source"]);
    assert.deepEqual(
      message.blocks.map((b) => b.step ?? 0),
      [0, 1, 1, 1, 2, 2, 2],
    );
    assert.equal(message.blocks[3].call_id, message.blocks[2].id);
    await assertAgentShown(page, message);
    const transients = await page.evaluate(() => window.__tokenwire.transients.length);
    return { reloadedAt, resumedFrom: state.resumedFrom, last: server.snapshot.seq, types, transients };
  },

  /**
   * The held-out check in the browser: an agent answer whose first model call breaks off and is
   * superseded by a retry, with a status line updated 5 times and 3 transient progress events.
   * Reloaded at several points (during the search, after the tool call, mid-answer), the page
   * ends with exactly the server's message (the latest status, no transient data, no block of
   * the superseded attempt) and the same rendering as a page opened after the end; the page saw
   * transient events live but never put them in the message.
   */
  async "agent-supersede"(browser) {
    const page = await browser.newPage();
    await agentOptions(page, { tps: 25, agent: { flaky: true, pause_ms: 500 } });
    const id = await ask(page, "mock-agent");
    const watcher = await browser.newPage();
    await watcher.goto(`${BASE}/?stream=${id}`);
    const points = [
      // (the page that asked is connected from the start: it gets the first transient event)
      ["search", () => window.__tokenwire.transients.length >= 1],
      ["tool call", () => window.__tokenwire.message?.blocks.some((b) => b.type === "tool_call")],
      ["answer", () => window.__tokenwire.message?.blocks.some((b) => b.type === "text" && b.text)],
    ];
    const reloads = [];
    const seen = [];
    for (const [name, ready] of points) {
      await page.waitForFunction(ready, null, { timeout: TIMEOUT });
      seen.push(...(await page.evaluate(() => window.__tokenwire.transients)));
      const at = await page.evaluate(() => [window.__tokenwire.seq, window.__tokenwire.message.status]);
      if (at[1] !== "in_progress") break;
      await page.reload();
      await page.waitForFunction(() => window.__tokenwire?.streamId, null, { timeout: TIMEOUT });
      reloads.push([name, at[0]]);
    }
    assert.ok(reloads.length >= 2, `the answer ended too soon to reload: ${JSON.stringify(reloads)}`);
    await waitStatus(page, "completed");
    await waitStatus(watcher, "completed");
    const server = await serverMessage(id);
    const message = JSON.parse(server.json);
    const ops = await (await fetch(`${BASE}/v1/streams/${id}/events?catchup=exact`, { headers: { "Last-Event-ID": "0" } })).text();
    assert.match(ops, /"type":"step\.reset","seq":\d+,"step":1/, "the first attempt was superseded");
    assert.doesNotMatch(ops, /"type":"transient"/, "a replay holds no transient data");
    for (const p of [page, watcher]) {
      const state = await hookState(p);
      assert.equal(state.json, server.json);
      assertContiguous(state.seqs, state.resumedFrom, server.snapshot.seq, state.snapshots);
      await assertShowsMessage(p, server.json);
    }
    assert.equal(message.blocks[0].value, "done: 2 sources cited");
    assert.equal(message.blocks.filter((b) => b.type === "reasoning").length, 1, "a superseded block is left");
    assert.equal(message.blocks.filter((b) => b.type === "data").length, 1);
    await assertAgentShown(page, message);
    const fresh = await browser.newPage();
    await fresh.goto(`${BASE}/?stream=${id}`);
    await waitStatus(fresh, "completed");
    assert.deepEqual(await blocksShown(fresh), await blocksShown(page));
    assert.deepEqual(await blocksShown(watcher), await blocksShown(page));
    // Transient events reach the pages connected at that moment (the watcher may have been late).
    const watched = await watcher.evaluate(() => window.__tokenwire.transients);
    assert.ok(seen.length >= 1 && seen.length <= 3, JSON.stringify(seen));
    assert.ok(watched.length <= 3, JSON.stringify(watched));
    assert.ok([...seen, ...watched].every((t) => t.name === "progress"), JSON.stringify(seen));
    return { reloads, last: server.snapshot.seq, transientsSeen: seen.length, watcherSaw: watched.length };
  },

  /** The network drops mid-answer: the client reconnects and resumes from its last seq. */
  async drop(browser) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await pace(page, { tps: 60, max_tokens: 200 });
    await page.addInitScript(() => {
      window.__states = [];
      new MutationObserver(() => {
        const state = document.querySelector("#connection")?.dataset.state;
        if (state && window.__states.at(-1) !== state) window.__states.push(state);
      }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
    });
    const id = await ask(page, "mock");
    await page.waitForFunction(() => window.__tokenwire.seq > 20, null, { timeout: TIMEOUT });
    // Chromium's offline mode fails new requests but leaves open ones alone, so the page is asked
    // to drop its connection; every reconnection attempt then fails until the network is back.
    await context.setOffline(true);
    await page.evaluate(() => window.__tokenwire.dropConnection());
    await page.waitForFunction(() => window.__tokenwire.state === "reconnecting", null, { timeout: TIMEOUT });
    const seqWhileOffline = await page.evaluate(() => window.__tokenwire.seq);
    await page.waitForTimeout(600);
    assert.equal(await page.evaluate(() => window.__tokenwire.seq), seqWhileOffline, "got ops while offline");
    await context.setOffline(false);
    await waitStatus(page, "completed");
    const server = await serverMessage(id);
    const state = await hookState(page);
    assert.equal(state.json, server.json);
    assertContiguous(state.seqs, 0, server.snapshot.seq, state.snapshots);
    await assertShowsMessage(page, server.json);
    const states = await page.evaluate(() => window.__states);
    assert.ok(states.includes("reconnecting"), states.join());
    await context.close();
    return { droppedAt: seqWhileOffline, last: server.snapshot.seq, states };
  },

  /** A second tab on the stream's URL mirrors it live. */
  async mirror(browser) {
    const context = await browser.newContext();
    const first = await context.newPage();
    await pace(first, { tps: 60, max_tokens: 200 });
    const id = await ask(first, "mock");
    await first.waitForFunction(() => window.__tokenwire.seq > 10, null, { timeout: TIMEOUT });
    const second = await context.newPage();
    await second.goto(first.url());
    await second.waitForFunction(() => window.__tokenwire.streamId, null, { timeout: TIMEOUT });
    // Live: the second tab receives ops while the answer is still in progress.
    await second.waitForFunction(
      () => window.__tokenwire.seqs.length >= 5 && window.__tokenwire.message.status === "in_progress",
      null,
      { timeout: TIMEOUT },
    );
    await waitStatus(first, "completed");
    await waitStatus(second, "completed");
    const server = await serverMessage(id);
    const [a, b] = [await hookState(first), await hookState(second)];
    assert.equal(a.json, server.json);
    assert.equal(b.json, server.json);
    assertContiguous(b.seqs, b.resumedFrom, server.snapshot.seq, b.snapshots);
    await assertShowsMessage(first, server.json);
    await assertShowsMessage(second, server.json);
    assert.deepEqual(await blocksShown(second), await blocksShown(first));
    await context.close();
    return { secondResumedFrom: b.resumedFrom, secondLiveOps: b.seqs.length };
  },

  /** Stop cancels the generation; the partial answer stays. */
  async stop(browser) {
    const page = await browser.newPage();
    await pace(page, { tps: 40, max_tokens: 400 });
    const id = await ask(page, "mock");
    await page.waitForFunction(() => window.__tokenwire.seq > 15, null, { timeout: TIMEOUT });
    assert.equal(await page.isEnabled("#stop"), true);
    await page.click("#stop");
    await waitStatus(page, "cancelled");
    const server = await serverMessage(id);
    assert.equal(server.snapshot.status, "cancelled");
    const state = await hookState(page);
    assert.equal(state.json, server.json);
    const message = JSON.parse(server.json);
    assert.ok(message.blocks.length >= 1 && message.blocks[0].text.length > 0, "partial text kept");
    assert.ok((message.usage?.completion_tokens ?? 0) < 400);
    assert.equal(await page.isEnabled("#stop"), false);
    assert.match(await page.textContent("#status"), /cancelled/);
    return { seq: server.snapshot.seq };
  },

  /** Hostile model output renders inert: no script runs, no handler fires, no JS link. */
  async html(browser) {
    const page = await browser.newPage();
    const dialogs = [];
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      d.dismiss();
    });
    await pace(page, { tps: 200 });
    const id = await ask(page, "mock-html");
    await waitStatus(page, "completed");
    await page.waitForTimeout(300); // give a (wrongly) injected handler time to fire
    const found = await page.evaluate(() => ({
      xss: window.__xss,
      scripts: document.querySelectorAll("#answer script").length,
      imgs: document.querySelectorAll("#answer img").length,
      handlers: [...document.querySelectorAll("#answer *")].flatMap((e) =>
        [...e.attributes].filter((a) => /^on/i.test(a.name)).map((a) => a.name),
      ),
      jsLinks: [...document.querySelectorAll("#answer a")].filter((a) => /^\s*javascript:/i.test(a.getAttribute("href") ?? "")).length,
      text: document.querySelector("#answer").textContent,
      bold: document.querySelectorAll("#answer strong").length,
    }));
    assert.equal(found.xss, undefined, "model output ran code");
    assert.equal(found.scripts, 0);
    assert.equal(found.imgs, 0);
    assert.deepEqual(found.handlers, []);
    assert.equal(found.jsLinks, 0);
    assert.deepEqual(dialogs, []);
    assert.match(found.text, /<script>window.__xss=2<\/script>/, "the markup is shown as text");
    assert.equal(found.bold, 1, "ordinary Markdown still renders");
    const server = await serverMessage(id);
    assert.equal((await hookState(page)).json, server.json);
    await assertShowsMessage(page, server.json);
    return {};
  },

  /** Tool calls: name and streamed arguments, one element per call. */
  async tools(browser) {
    const page = await browser.newPage();
    await pace(page, { tps: 100 });
    const id = await ask(page, "mock-tools");
    await waitStatus(page, "completed");
    const server = await serverMessage(id);
    const message = JSON.parse(server.json);
    const calls = await page.$$eval('[data-block-type="tool_call"]', (els) =>
      els.map((e) => ({ name: e.querySelector(".tool-name").textContent, args: e.querySelector("pre").textContent })),
    );
    assert.deepEqual(
      calls,
      message.blocks.filter((b) => b.type === "tool_call").map((b) => ({ name: b.name, args: b.arguments })),
    );
    assert.ok(calls.length >= 1);
    await assertShowsMessage(page, server.json);
    return { calls: calls.length };
  },

  /** A failing upstream ends the answer with a visible error; the partial text stays. */
  async error(browser) {
    const page = await browser.newPage();
    await pace(page, { tps: 200 });
    await ask(page, "mock-error");
    await waitStatus(page, "failed");
    assert.match(await page.textContent("#status"), /failed: .+/);
    assert.ok((await page.textContent('[data-block-index="0"]')).length > 0);
    return {};
  },
};

async function main() {
  const names = values.case?.length ? values.case : Object.keys(CASES);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  let failed = 0;
  try {
    for (const name of names) {
      const run = CASES[name];
      if (!run) {
        console.log(JSON.stringify({ case: name, ok: false, error: "no such case" }));
        failed += 1;
        continue;
      }
      const started = Date.now();
      try {
        const details = await run(browser);
        console.log(JSON.stringify({ case: name, ok: true, ms: Date.now() - started, ...details }));
      } catch (error) {
        failed += 1;
        console.log(JSON.stringify({ case: name, ok: false, error: String(error?.stack ?? error) }));
      }
      for (const context of browser.contexts()) await context.close();
    }
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}

main();
