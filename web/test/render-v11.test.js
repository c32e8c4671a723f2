// Rendering the v1.1 blocks: tool results, files, data status lines, citations on spans, steps,
// step.reset, transient data — and that all of it stays inert whatever the model sends.
import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";
import { createMarkdown } from "../src/markdown.js";
import { applyOp, applyOps, emptyMessage } from "../src/model.js";
import { MessageView, NaiveView, TransientStatus, dataText } from "../src/render.js";
import { AGENT_JSON, agentOps } from "./agent-ops.js";

const { window } = new JSDOM("<!doctype html><body></body>");
const document = window.document;
const md = createMarkdown(window);

/** A view driven by hand: `frame()` flushes what is pending, as one animation frame. */
function harness() {
  const container = document.createElement("div");
  let queue = [];
  const view = new MessageView(container, { markdown: md, schedule: (cb) => queue.push(cb) });
  let message = emptyMessage();
  let seq = 0;
  return {
    container,
    view,
    get message() {
      return message;
    },
    /** Applies ops (seq filled in) and renders one frame after each `perFrame` of them. */
    feed(ops, perFrame = 1) {
      ops.forEach((op, i) => {
        const full = op.seq === undefined ? { ...op, seq: op.type === "transient" ? seq : ++seq } : op;
        if (op.seq !== undefined && op.type !== "transient") seq = op.seq;
        message = applyOp(message, full);
        view.update(full, message);
        if ((i + 1) % perFrame === 0 || i === ops.length - 1) this.frame();
      });
    },
    frame() {
      const now = queue;
      queue = [];
      for (const cb of now) cb();
    },
    blocks() {
      return [...container.children].map((e) => [e.dataset.blockType, Number(e.dataset.blockIndex)]);
    },
    el(index) {
      return container.querySelector(`[data-block-index="${index}"]`);
    },
  };
}

test("the agent answer: every block shown, once, in order; latest data value; steps separated", () => {
  for (const perFrame of [1, 3, 1000]) {
    const h = harness();
    h.feed(agentOps(), perFrame);
    assert.equal(JSON.stringify(h.message), AGENT_JSON);
    assert.deepEqual(h.blocks(), [
      ["reasoning", 0],
      ["data", 1],
      ["tool_call", 2],
      ["tool_result", 3],
      ["text", 4],
      ["source", 5],
    ]);
    assert.equal(h.el(1).querySelector(".data-value").textContent, "done");
    assert.equal(h.el(1).querySelector(".data-name").textContent, "status");
    const result = h.el(3);
    assert.equal(result.tagName, "DETAILS");
    assert.equal(result.dataset.callId, "call_1");
    assert.equal(h.el(2).dataset.callId, "call_1", "the call and its result are paired");
    assert.match(result.querySelector("summary").textContent, /^Result of search/);
    assert.equal(result.querySelector(".tool-output").textContent, "5 results");
    assert.ok(!result.classList.contains("tool-error"));
    // Step 1 starts at block 4, with a visible separator; nothing of the superseded attempt.
    assert.deepEqual(
      [...h.container.querySelectorAll(".step-start")].map((e) => [e.dataset.blockIndex, e.dataset.stepLabel]),
      [["4", "Step 1"]],
    );
    assert.equal(h.el(4).dataset.step, "1");
    assert.equal(h.container.querySelectorAll('[data-block-type="text"]').length, 1);
    // The citation: numbered link right after the cited span ("tide is high"), on the text block.
    assert.equal(h.el(4).textContent.trim(), "The tide is high[1] at 6 pm.");
    const cite = h.el(4).querySelector("sup.cite a");
    assert.equal(cite.getAttribute("href"), "https://tides.example");
    assert.equal(cite.getAttribute("rel"), "noopener noreferrer nofollow");
    assert.equal(cite.textContent, "[1]");
    assert.match(h.el(5).textContent, /^\[1\] Source Tides/);
    // No transient data anywhere in the answer.
    assert.ok(!/0\.5|progress/.test(h.container.textContent));
  }
});

test("data blocks update in place: same element, new value, also after block.end", () => {
  const h = harness();
  h.feed([
    { type: "message.start", id: "st", model: null },
    { type: "block.start", index: 0, block: { type: "data", name: "search", id: "s", value: { status: "searching…" } } },
    { type: "block.end", index: 0 },
  ]);
  const line = h.el(0);
  const value = line.querySelector(".data-value");
  assert.equal(value.textContent, "searching…");
  const seen = [];
  for (const v of [{ status: "3 results" }, { count: 5 }, [1, 2], 42, { message: "<b>done</b>" }]) {
    h.feed([{ type: "block.update", index: 0, set: { value: v } }]);
    assert.equal(h.el(0), line);
    seen.push(value.textContent);
  }
  assert.deepEqual(seen, ["3 results", '{"count":5}', "[1,2]", "42", "<b>done</b>"]);
  assert.equal(line.querySelector("b"), null, "a value is text, never markup");
  // Several updates within one frame: one DOM write, with the last value.
  const before = h.view.blockRenders[0];
  h.feed(
    [1, 2, 3].map((n) => ({ type: "block.update", index: 0, set: { value: `v${n}` } })),
    3,
  );
  assert.equal(value.textContent, "v3");
  assert.equal(h.view.blockRenders[0], before + 1);
  assert.equal(dataText("x".repeat(400)).length, 400);
  assert.equal(dataText({ a: "x".repeat(400) }).length, 300);
});

test("a tool result's error flag set after its end: styled as an error, opened, output kept", () => {
  const h = harness();
  h.feed([
    { type: "message.start", id: "st", model: null },
    { type: "block.start", index: 0, block: { type: "tool_call", id: "c1", name: "fetch", arguments: "" } },
    { type: "block.delta", text: "{}" },
    { type: "block.end", index: 0 },
    { type: "block.start", index: 1, block: { type: "tool_result", call_id: "c1", name: "fetch", output: "" } },
    { type: "block.delta", text: "Timeout after " },
    { type: "block.delta", text: "30 s" },
    { type: "block.end", index: 1 },
  ]);
  const el = h.el(1);
  assert.ok(!el.hasAttribute("open"));
  const callHtml = h.el(0).outerHTML;
  h.feed([{ type: "block.update", index: 1, set: { error: true } }]);
  assert.equal(h.el(1), el);
  assert.ok(el.classList.contains("tool-error"));
  assert.ok(el.hasAttribute("open"));
  assert.match(el.querySelector("summary").textContent, /^Error from fetch/);
  assert.equal(el.querySelector(".tool-output").textContent, "Timeout after 30 s");
  assert.equal(h.el(0).outerHTML, callHtml, "the call itself is not touched");
  // A result that starts as an error is one from the start.
  h.feed([
    { type: "block.start", index: 2, block: { type: "tool_result", call_id: "c2", name: null, error: true, output: "" } },
  ]);
  assert.ok(h.el(2).classList.contains("tool-error"));
  assert.match(h.el(2).querySelector("summary").textContent, /\(unnamed\)/);
});

test("step.reset removes exactly that step's elements; earlier ones are not touched", () => {
  const h = harness();
  h.feed([
    { type: "message.start", id: "st", model: null },
    { type: "block.start", index: 0, block: { type: "text", text: "" } },
    { type: "block.delta", text: "Looking.\n\nStill." },
    { type: "block.end", index: 0 },
    { type: "block.start", index: 1, block: { type: "data", name: "s", id: "d", value: 1 } },
    { type: "block.start", index: 2, block: { type: "text", step: 1, text: "" } },
    { type: "block.delta", text: "Attempt one" },
    { type: "block.start", index: 3, block: { type: "tool_call", step: 1, id: "c", name: "f", arguments: "" } },
  ]);
  const kept = [h.el(0), h.el(1)];
  const keptHtml = kept.map((e) => e.outerHTML);
  const renders = h.view.blockRenders.slice(0, 2);
  h.feed([{ type: "step.reset", step: 1 }]);
  assert.deepEqual(h.blocks(), [["text", 0], ["data", 1]]);
  assert.deepEqual([h.el(0), h.el(1)], kept);
  assert.deepEqual(kept.map((e) => e.outerHTML), keptHtml);
  assert.deepEqual(h.view.blockRenders, renders);
  // The retry reuses the step and the indexes; a reset within one frame of a start is fine too.
  h.feed(
    [
      { type: "block.start", index: 2, block: { type: "text", step: 1, text: "" } },
      { type: "block.delta", text: "gone" },
      { type: "block.end", index: 2 },
      { type: "step.reset", step: 1 },
      { type: "block.start", index: 2, block: { type: "refusal", step: 1, text: "" } },
      { type: "block.delta", text: "Attempt two" },
    ],
    6,
  );
  assert.deepEqual(h.blocks(), [["text", 0], ["data", 1], ["refusal", 2]]);
  assert.ok(!h.el(2).hasAttribute("data-final"), "the old block.end does not end the new block");
  assert.match(h.el(2).textContent, /Attempt two$/);
  assert.ok(h.el(2).classList.contains("step-start"));
});

test("a reset that drops a source citing an earlier step's text removes its citation too", () => {
  const h = harness();
  const ops = [
    { type: "message.start", id: "st", model: null },
    { type: "block.start", index: 0, block: { type: "text", text: "" } },
    { type: "block.delta", text: "Water boils at 100 °C." },
    { type: "block.end", index: 0 },
    { type: "block.start", index: 1, block: { type: "source", step: 1, url: "https://w", title: "W", span: { block: 0, start: 0, end: 11 } } },
  ];
  h.feed(ops);
  assert.equal(h.el(0).textContent.trim(), "Water boils[1] at 100 °C.");
  h.feed([{ type: "step.reset", step: 1 }]);
  assert.equal(h.el(0).textContent.trim(), "Water boils at 100 °C.");
  assert.deepEqual(h.blocks(), [["text", 0]]);
});

test("citations: code-point spans, a source before its text, a final block re-rendered only where cited", () => {
  const h = harness();
  const para = "Intro paragraph that stays.\n\n";
  h.feed([
    { type: "message.start", id: "st", model: null },
    { type: "block.start", index: 0, block: { type: "text", text: "" } },
    { type: "block.delta", text: para },
    { type: "block.delta", text: "😀 Emoji *then* cited words.\n\n" },
    { type: "block.delta", text: "Last part." },
    { type: "block.end", index: 0 },
  ]);
  const pieces = [...h.el(0).querySelectorAll(".md-piece, .md-tail")];
  const intro = pieces[0];
  const introHtml = intro.innerHTML;
  const cp = [...para].length;
  // "cited words" in code points (the emoji is one code point, two UTF-16 units).
  const start = cp + [..."😀 Emoji *then* "].length;
  h.feed([
    { type: "block.start", index: 1, block: { type: "source", url: "https://a", title: 'A "quoted" <b>', span: { block: 0, start, end: start + 11 } } },
  ]);
  assert.match(h.el(0).textContent, /😀 Emoji then cited words\[1\]\.\n?/);
  assert.equal(h.el(0).querySelector("em").textContent, "then", "the Markdown around it is unchanged");
  assert.equal(h.el(0).querySelector(".cite a").getAttribute("title"), 'A "quoted" <b>');
  assert.equal(h.el(0).querySelector("b"), null);
  assert.equal(intro.innerHTML, introHtml, "a piece without the citation is not re-rendered");
  assert.equal(pieces[0], h.el(0).querySelector(".md-piece"));
  // A source that cites text not streamed yet: its mark shows once the text gets there.
  h.feed([
    { type: "block.start", index: 2, block: { type: "text", text: "" } },
    { type: "block.delta", text: "Short" },
    { type: "block.start", index: 3, block: { type: "source", url: "javascript:alert(1)", title: "x", span: { block: 2, start: 0, end: 12 } } },
  ]);
  assert.equal(h.el(2).textContent.trim(), "Short");
  h.feed([{ type: "block.delta", index: 2, text: " and longer now" }]);
  assert.equal(h.el(2).textContent.trim(), "Short and lo[2]nger now");
  assert.equal(h.el(2).querySelector(".cite a"), null, "only http(s) citations are links");
  assert.equal(h.el(3).querySelector("a"), null);
});

test("a citation mark that would change the Markdown falls back to links after the piece", () => {
  const h = harness();
  const text = "```\ncode\n```\nafter the fence";
  const end = text.indexOf("```\nafter") + 3; // right after the closing fence
  h.feed([
    { type: "message.start", id: "st", model: null },
    { type: "block.start", index: 0, block: { type: "text", text: "" } },
    { type: "block.delta", text },
    { type: "block.end", index: 0 },
    { type: "block.start", index: 1, block: { type: "source", url: "https://f", title: "F", span: { block: 0, start: 0, end } } },
  ]);
  const html = [...h.el(0).querySelectorAll(".md-piece, .md-tail")].map((e) => e.innerHTML).join("");
  assert.ok(html.startsWith(md.render("```\ncode\n```\n")), html);
  assert.equal(h.el(0).querySelectorAll(".cite-group .cite").length, 1);
  assert.equal(h.el(0).querySelector("pre").textContent, "code\n");
});

test("files: image previews for image types with safe URLs, links only for http(s)", () => {
  const h = harness();
  const files = [
    { url: "https://x/cat.png", media_type: "image/png", name: "cat.png" },
    { url: "data:image/png;base64,iVBORw0KGgo=", media_type: "image/png", name: null },
    { url: "data:text/html;base64,PHNjcmlwdD4=", media_type: "text/html", name: "page.html" },
    { url: "javascript:alert(1)", media_type: "image/png", name: "<img src=x onerror=alert(1)>" },
    { url: "data:image/svg+xml;base64,PHN2Zz4=", media_type: "image/svg+xml", name: "v.svg" },
    { url: "https://x/report.pdf", media_type: "application/pdf", name: "report.pdf" },
  ];
  h.feed([
    { type: "message.start", id: "st", model: null },
    ...files.map((f, index) => ({ type: "block.start", index, block: { type: "file", ...f } })),
  ]);
  const shown = files.map((_, i) => {
    const e = h.el(i);
    return {
      link: e.querySelector("a")?.getAttribute("href") ?? null,
      img: e.querySelector("img")?.getAttribute("src") ?? null,
      text: e.textContent,
    };
  });
  assert.deepEqual(shown, [
    { link: "https://x/cat.png", img: "https://x/cat.png", text: "File cat.png image/png" },
    { link: null, img: "data:image/png;base64,iVBORw0KGgo=", text: "File embedded file image/png" },
    { link: null, img: null, text: "File page.html text/html" },
    { link: null, img: null, text: "File <img src=x onerror=alert(1)> image/png" },
    { link: null, img: null, text: "File v.svg image/svg+xml" },
    { link: "https://x/report.pdf", img: null, text: "File report.pdf application/pdf" },
  ]);
  assert.equal(h.container.querySelectorAll("[onerror]").length, 0);
});

test("reasoning: redacted is marked, signatures stay out of the page", () => {
  const h = harness();
  h.feed([
    { type: "message.start", id: "st", model: null },
    { type: "block.start", index: 0, block: { type: "reasoning", encrypted: "SECRET-BLOB", redacted: true, text: "" } },
    { type: "block.end", index: 0 },
    { type: "block.update", index: 0, set: { signature: "SIG-BYTES" } },
  ]);
  assert.ok(h.el(0).hasAttribute("data-redacted"));
  assert.ok(!/SECRET|SIG-BYTES/.test(h.container.innerHTML));
});

test("resuming the agent answer from a snapshot at any seq shows what following it from the start shows", () => {
  const ops = agentOps();
  const full = harness();
  full.feed(ops);
  const real = ops.filter((op) => op.type !== "transient");
  for (let cut = 1; cut <= real.length; cut++) {
    const h = harness();
    const snapshot = { type: "snapshot", seq: cut, message: JSON.parse(JSON.stringify(applyOps(real.slice(0, cut)))) };
    h.feed([snapshot, ...ops.filter((op) => op.seq > cut)]);
    assert.equal(JSON.stringify(h.message), AGENT_JSON);
    assert.equal(h.container.textContent, full.container.textContent, `cut at ${cut}`);
    assert.deepEqual(h.blocks(), full.blocks());
  }
  // A snapshot after a reset (fewer blocks than shown) replaces what is shown.
  const h = harness();
  h.feed(ops.slice(0, ops.findIndex((op) => op.type === "step.reset"))); // the superseded attempt shows
  assert.match(h.container.textContent.trim(), /The tide is hi$/);
  const last = real.at(-1).seq;
  h.feed([{ type: "snapshot", seq: last, message: JSON.parse(AGENT_JSON) }]);
  assert.equal(h.container.textContent, full.container.textContent);
});

test("the naive view shows the same blocks", () => {
  const container = document.createElement("div");
  const view = new NaiveView(container, { markdown: md });
  let message = emptyMessage();
  for (const op of agentOps()) view.update(op, (message = applyOp(message, op)));
  assert.deepEqual(
    [...container.children].map((e) => e.dataset.blockType),
    ["reasoning", "data", "tool_call", "tool_result", "text", "source"],
  );
});

test("transient data shows for a moment, then is gone", async () => {
  const box = document.createElement("div");
  const status = new TransientStatus(box, { ttlMs: 30 });
  assert.equal(box.hidden, true);
  status.show({ type: "transient", seq: 3, name: "search", value: { status: "<i>5 results</i>" } });
  assert.equal(box.hidden, false);
  assert.equal(box.textContent, "search: <i>5 results</i>");
  assert.equal(box.querySelector("i"), null);
  status.show({ type: "transient", seq: 3, name: "", value: 0.5 });
  assert.equal(box.textContent, "0.5");
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(box.hidden, true);
  assert.equal(box.textContent, "");
});
