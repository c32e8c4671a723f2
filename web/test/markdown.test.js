import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";
import { boundaries, createMarkdown, splitStable, stableBoundary } from "../src/markdown.js";

const { window } = new JSDOM("<!doctype html><body></body>");
const md = createMarkdown(window);

export const SAMPLES = [
  "# Title\n\nFirst paragraph\nstill first.\n\nSecond paragraph with `code`.\n",
  "Intro:\n\n- one\n- two\n\n- three (loose)\n\n  continued in item\n\nAfter the list.\n\n1. a\n2. b\n\n3. c\n\nEnd",
  "Code:\n\n```python\ndef f():\n\n    return 1\n```\nRight after the fence.\n\n~~~\n``` not a close\n~~~\n\nDone",
  "> quote\n> more\n\nplain\n\n    indented code\n\n    more code\n\nback\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nfin",
  "Heading\n=======\n\nText\n\n---\n\n***bold italic*** and a [link](https://example.com).\n\n- [ ] x\n",
  "No blank lines at all, just one long paragraph that keeps going and going",
  "```js\nunclosed fence\n\nstill code\n\nmore",
  "* a\n\n  ```\n  nested fence\n\n  ```\n\n* b\n\ntext\n",
];

test("every boundary of a prefix is a boundary of the whole text (adding text never moves one)", () => {
  for (const text of SAMPLES) {
    const all = new Set([0, ...boundaries(text)]);
    for (let n = 0; n <= text.length; n++) {
      const prefix = text.slice(0, n);
      for (const b of boundaries(prefix)) {
        assert.ok(all.has(b), `boundary ${b} of prefix ${n} is not final in ${JSON.stringify(text)}`);
      }
    }
  }
});

test("rendering the stable pieces separately gives the same HTML as rendering the whole", () => {
  for (const text of SAMPLES) {
    const pieces = splitStable(text);
    assert.equal(pieces.join(""), text);
    assert.equal(
      pieces.map((p) => md.render(p)).join(""),
      md.render(text),
      `pieces ${JSON.stringify(pieces)}`,
    );
  }
});

test("boundaries: after a blank line before flush-left text, after a closing fence; never inside one", () => {
  assert.equal(stableBoundary("a\n\n"), 0, "the next line is not known yet");
  assert.equal(stableBoundary("a\n\nb"), 3);
  assert.equal(stableBoundary("a\n\n  b"), 0, "indented: may continue the block above");
  assert.equal(stableBoundary("- a\n\n- b"), 0, "a list item may belong to the same list");
  assert.equal(stableBoundary("```\nx\n\ny\n"), 0, "inside a fence");
  assert.equal(stableBoundary("```\nx\n```"), 0, "the closing line is not complete yet");
  assert.equal(stableBoundary("```\nx\n```\n"), 10);
  assert.equal(stableBoundary("p\n\nq\n\nr", 3), 6, "scans from a given boundary");
});

test("boundary search from the last boundary costs the new text, not the whole", () => {
  const head = "para\n\n".repeat(5000);
  const text = `${head}tail`;
  assert.equal(stableBoundary(text, head.length), head.length);
  assert.equal(stableBoundary(`${text} more\n\nnext`, head.length), text.length + 7);
});

const HOSTILE = [
  '<img src="x" onerror="window.__pwned = 1">',
  "<script>window.__pwned = 2</script>",
  '<a href="javascript:window.__pwned=3">click</a>',
  "[click](javascript:window.__pwned=4)",
  '<svg onload="window.__pwned=5"><circle r="1"/></svg>',
  '<iframe src="javascript:window.__pwned=6"></iframe>',
  "![x](javascript:window.__pwned=7)",
  '<div style="background:url(javascript:x)" onclick="window.__pwned=8">hi</div>',
].join("\n\n");

function assertInert(html) {
  const doc = new JSDOM(`<body>${html}</body>`).window.document;
  assert.equal(doc.querySelectorAll("script, iframe, object, embed, style").length, 0, html);
  for (const node of doc.querySelectorAll("*")) {
    for (const attr of node.attributes) {
      assert.ok(!/^on/i.test(attr.name), `handler attribute ${attr.name} in ${html}`);
      assert.ok(!/^\s*javascript:/i.test(attr.value), `javascript: URL in ${html}`);
    }
  }
}

test("model output renders inert: raw HTML is shown as text, never as elements", () => {
  const html = md.render(HOSTILE);
  assertInert(html);
  const doc = new JSDOM(`<body>${html}</body>`).window.document;
  assert.equal(doc.querySelectorAll("img").length, 0);
  assert.match(doc.body.textContent, /<script>window.__pwned = 2<\/script>/);
});

test("the sanitizer strips handlers and scripts even from HTML that got past the Markdown step", () => {
  const html = md.sanitize(HOSTILE.replaceAll("\n\n", ""));
  assertInert(html);
  const doc = new JSDOM(`<body>${html}</body>`).window.document;
  assert.equal(doc.querySelectorAll("img").length, 1, "the image stays, without its handler");
});

test("renderInto puts sanitized nodes straight into the DOM", () => {
  const target = window.document.createElement("div");
  target.innerHTML = "<p>old</p>";
  md.renderInto(target, `# Hi\n\n${HOSTILE}`);
  assertInert(target.innerHTML);
  assert.equal(target.querySelector("h1").textContent, "Hi");
  assert.equal(target.innerHTML, md.render(`# Hi\n\n${HOSTILE}`));
});

test("links open safely in a new tab", () => {
  const doc = new JSDOM(`<body>${md.render("see https://example.com/x")}</body>`).window.document;
  const link = doc.querySelector("a");
  assert.equal(link.getAttribute("href"), "https://example.com/x");
  assert.equal(link.getAttribute("target"), "_blank");
  assert.match(link.getAttribute("rel"), /noopener/);
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
  "", "", "", "Plain words here.", "more words", "# Heading", "Setext", "===", "---", "- item",
  "* star item", "1. first", "2) second", "  indented continuation", "    code block line", "```",
  "```js", "~~~", "> quoted", "| a | b |", "|---|---|", "| 1 | 2 |", "***", "12", "text with `tick",
  "<div>html</div>", "[ref]: https://example.com", "see [ref]",
];

test("random documents: boundaries are final, and pieces render like the whole", () => {
  const random = rng(Number(process.env.FUZZ_SEED) || 7);
  for (let doc = 0; doc < (Number(process.env.FUZZ_DOCS) || 400); doc++) {
    const n = 1 + Math.floor(random() * 14);
    const text = Array.from({ length: n }, () => LINES[Math.floor(random() * LINES.length)]).join("\n");
    const all = new Set([0, ...boundaries(text)]);
    for (let k = 0; k <= text.length; k++) {
      for (const b of boundaries(text.slice(0, k))) assert.ok(all.has(b), JSON.stringify(text));
    }
    const pieces = splitStable(text);
    assert.equal(pieces.map((p) => md.render(p)).join(""), md.render(text), JSON.stringify(pieces));
  }
});
