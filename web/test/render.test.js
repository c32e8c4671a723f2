import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";
import { createMarkdown, splitStable } from "../src/markdown.js";
import { applyOp, applyOps, emptyMessage } from "../src/model.js";
import { MessageView, NaiveView } from "../src/render.js";

const { window } = new JSDOM("<!doctype html><body></body>");
const document = window.document;

const TEXT =
  "Here is the plan:\n\n1. Read the log\n2. Resume after the last seq\n\n" +
  "```python\nfor op in ops:\n\n    apply(op)\n```\n\nThat is **all**. Use `after=N`.\n\n" +
  "- tail item\n- another <img src=x onerror=\"window.__pwned=1\">\n";
const REASONING = "The user wants resume.\n\nI should explain the cursor.\n";
const ARGS = '{"city": "Paris", "unit": "c"}';

/** Ops for a message with every block type, deltas cut into `size`-character pieces. */
function opsFor(size) {
  const ops = [];
  const push = (op) => ops.push({ ...op, seq: ops.length + 1 });
  const stream = (index, text) => {
    for (let i = 0; i < text.length; i += size) push({ type: "block.delta", index, text: text.slice(i, i + size) });
  };
  push({ type: "message.start", id: "st_r", model: "mock" });
  push({ type: "block.start", index: 0, block: { type: "reasoning", text: "" } });
  stream(0, REASONING);
  push({ type: "block.end", index: 0 });
  push({ type: "block.start", index: 1, block: { type: "text", text: "" } });
  stream(1, TEXT);
  push({ type: "block.end", index: 1 });
  push({ type: "block.start", index: 2, block: { type: "tool_call", id: "call_1", name: "get_weather", arguments: "" } });
  stream(2, ARGS);
  push({ type: "block.end", index: 2 });
  push({ type: "block.start", index: 3, block: { type: "refusal", text: "" } });
  stream(3, "I can't share that.");
  push({ type: "block.end", index: 3 });
  push({ type: "block.start", index: 4, block: { type: "source", url: "https://example.com/a", title: "A" } });
  push({ type: "block.end", index: 4 });
  push({ type: "block.start", index: 5, block: { type: "source", url: "javascript:alert(1)", title: "bad" } });
  push({ type: "block.end", index: 5 });
  push({ type: "block.start", index: 6, block: { type: "image", url: "data:image/png;base64,iVBORw0KGgo=" } });
  push({ type: "block.end", index: 6 });
  push({ type: "message.end", status: "completed", finish_reason: "stop", usage: null, error: null });
  return ops;
}

/** A markdown renderer that records the length of every source it renders. */
function countingMarkdown() {
  const md = createMarkdown(window);
  const sizes = [];
  return {
    sizes,
    render: (src) => (sizes.push(src.length), md.render(src)),
    renderInto: (target, src) => (sizes.push(src.length), md.renderInto(target, src)),
    sanitize: md.sanitize,
  };
}

/** A scheduler run by hand: `frame()` runs what is pending, like one animation frame. */
function manualFrames() {
  let queue = [];
  let requests = 0;
  return {
    schedule: (cb) => {
      requests += 1;
      queue.push(cb);
    },
    frame() {
      const now = queue;
      queue = [];
      for (const cb of now) cb();
    },
    get requests() {
      return requests;
    },
  };
}

function run(ops, { opsPerFrame = 1, view, frames }) {
  let message = emptyMessage();
  const snapshots = new Map(); // index -> outerHTML seen right after the block's final render
  ops.forEach((op, i) => {
    message = applyOp(message, op);
    view.update(op, message);
    if ((i + 1) % opsPerFrame === 0 || i === ops.length - 1) {
      frames.frame();
      for (const blockView of view.views) {
        const seen = snapshots.get(blockView.index);
        if (seen) {
          assert.equal(blockView.root.outerHTML, seen.html, `block ${blockView.index} changed after it ended`);
          assert.equal(blockView.renders, seen.renders);
        } else if (blockView.final) {
          snapshots.set(blockView.index, { html: blockView.root.outerHTML, renders: blockView.renders });
        }
      }
    }
  });
  return message;
}

for (const [size, opsPerFrame] of [[1, 1], [3, 1], [5, 4], [1000, 1]]) {
  test(`per-block rendering (deltas of ${size} chars, ${opsPerFrame} op(s)/frame)`, () => {
    const container = document.createElement("div");
    const md = countingMarkdown();
    const frames = manualFrames();
    const view = new MessageView(container, { markdown: md, schedule: frames.schedule });
    const ops = opsFor(size);
    run(ops, { opsPerFrame, view, frames });

    // One flush per frame at most: never more than one pending request.
    assert.ok(frames.requests <= Math.ceil(ops.length / opsPerFrame));
    const blocks = [...container.children];
    assert.deepEqual(
      blocks.map((b) => [b.dataset.blockType, b.dataset.blockIndex]),
      [["reasoning", "0"], ["text", "1"], ["tool_call", "2"], ["refusal", "3"], ["source", "4"], ["source", "5"], ["image", "6"]],
    );
    // The incremental result is the same HTML as rendering the whole text at once.
    const text = blocks[1];
    const html = [...text.querySelectorAll(".md-piece, .md-tail")].map((e) => e.innerHTML).join("");
    assert.equal(html, createMarkdown(window).render(TEXT));
    assert.equal(blocks[2].querySelector("pre").textContent, ARGS);
    assert.equal(blocks[3].textContent, "RefusalI can't share that.".replace("Refusal", "Refusal"));
    assert.equal(blocks[4].querySelector("a").getAttribute("href"), "https://example.com/a");
    assert.equal(blocks[5].querySelector("a"), null, "a javascript: source is not a link");
    assert.equal(blocks[6].querySelector("img").getAttribute("src"), "data:image/png;base64,iVBORw0KGgo=");
    assert.equal(container.querySelector("img[onerror], script"), null);
    // Work per render follows the new text: nothing longer than one stable piece is re-rendered.
    // (A frame that brings several pieces at once renders them together, once.)
    const longest = Math.max(...[TEXT, REASONING].flatMap(splitStable).map((p) => p.length));
    assert.ok(Math.max(...md.sizes) <= longest + size * opsPerFrame, `rendered ${Math.max(...md.sizes)} > ${longest}`);
  });
}

test("resuming from a snapshot renders the same answer as following from the start", () => {
  const ops = opsFor(2);
  const full = document.createElement("div");
  const frames = manualFrames();
  run(ops, { view: new MessageView(full, { markdown: createMarkdown(window), schedule: frames.schedule }), frames });

  for (const cut of [3, 40, 90, ops.length - 3]) {
    const resumed = document.createElement("div");
    const f = manualFrames();
    const view = new MessageView(resumed, { markdown: createMarkdown(window), schedule: f.schedule });
    const snapshot = {
      type: "snapshot",
      seq: cut,
      message: JSON.parse(JSON.stringify(applyOps(ops.slice(0, cut)))),
    };
    run([snapshot, ...ops.slice(cut)], { view, frames: f });
    assert.equal(resumed.textContent, full.textContent, `cut at ${cut}`);
  }
});

test("the naive view re-renders everything on every op and ends with the same text", () => {
  const ops = opsFor(4);
  const container = document.createElement("div");
  const view = new NaiveView(container, { markdown: createMarkdown(window) });
  let message = emptyMessage();
  for (const op of ops) view.update(op, (message = applyOp(message, op)));
  const incremental = document.createElement("div");
  const frames = manualFrames();
  run(ops, { view: new MessageView(incremental, { markdown: createMarkdown(window), schedule: frames.schedule }), frames });
  assert.equal(view.renderCount, ops.length);
  assert.equal(container.textContent.replace("Reasoning", ""), incremental.textContent.replace("Reasoning", ""));
});

/** Small seeded PRNG so the random documents are the same on every run. */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const LINES = [
  "", "", "", "Plain words here.", "more words  ", "# Heading", "Setext", "===", "---", "- item",
  "* star item", "1. first", "2) second", "  indented continuation", "    code block line", "```",
  "```js", "~~~", "> quoted", "| a | b |", "|---|---|", "| 1 | 2 |", "***", "12", "text `tick",
  "see https://example.com/x", "**bold** and _em_", "   ", "\t",
];

test("random documents streamed in random pieces end exactly as rendering the whole text", () => {
  const random = rng(Number(process.env.FUZZ_SEED) || 11);
  const md = createMarkdown(window);
  for (let doc = 0; doc < (Number(process.env.FUZZ_DOCS) || 150); doc++) {
    const n = 1 + Math.floor(random() * 16);
    const text = Array.from({ length: n }, () => LINES[Math.floor(random() * LINES.length)]).join(
      random() < 0.5 ? "\n" : "\n\n",
    );
    const ops = [
      { type: "message.start", seq: 1, id: "st_f", model: null },
      { type: "block.start", seq: 2, index: 0, block: { type: "text", text: "" } },
    ];
    for (let i = 0; i < text.length; ) {
      const size = 1 + Math.floor(random() * 6);
      ops.push({ type: "block.delta", seq: ops.length + 1, index: 0, text: text.slice(i, i + size) });
      i += size;
    }
    ops.push({ type: "block.end", seq: ops.length + 1, index: 0 });
    const container = document.createElement("div");
    const frames = manualFrames();
    const view = new MessageView(container, { markdown: md, schedule: frames.schedule });
    run(ops, { opsPerFrame: 1 + Math.floor(random() * 3), view, frames });
    const html = [...container.querySelectorAll(".md-piece, .md-tail")].map((e) => e.innerHTML).join("");
    assert.equal(html, md.render(text), JSON.stringify(text));
  }
});
