// @ts-check
/**
 * A deterministic ~2,000-token answer as ops: a reasoning block, then a Markdown text block with
 * headings, paragraphs, lists and code fences. One op per token (no coalescing: the worst case).
 */

const WORDS = (
  "stream token latency buffer socket client server model answer delta chunk replay cursor " +
  "snapshot window browser worker message block reasoning tool request response bytes frame " +
  "event queue signal order state retry partial complete exact simple careful quick steady"
).split(" ");

/** Small seeded PRNG. */
function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0), s / 2 ** 32);
}

/** Word-ish tokens: a word with its leading space, punctuation, or newlines. */
export function tokenize(text) {
  return text.match(/[ \t]*\w+|[ \t]*[^\w\s]+|\n+|[ \t]+/g) ?? [];
}

function sentence(r, lo, hi) {
  const n = lo + Math.floor(r() * (hi - lo + 1));
  const words = Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]);
  return `${words.join(" ").replace(/^./, (c) => c.toUpperCase())}.`;
}

function section(r, i) {
  const para = Array.from({ length: 3 }, () => sentence(r, 8, 14)).join(" ");
  const items = Array.from({ length: 4 }, () => `- ${sentence(r, 4, 8)}\n`).join("");
  const ordered = Array.from({ length: 3 }, (_, k) => `${k + 1}. ${sentence(r, 3, 6)}\n`).join("");
  const code =
    "```python\n" +
    `def step_${i}(cursor, log):\n    for op in log.after(cursor.seq):\n        cursor.apply(op)\n` +
    `    return cursor.seq * ${i}\n` +
    "```\n";
  return `## Section ${i}: ${sentence(r, 2, 4)}\n\n${para}\n\n${items}\n${code}\n${ordered}\n${sentence(r, 6, 12)}\n\n`;
}

/**
 * @param {number} [tokens] total tokens (reasoning + text)
 * @returns {{ops: object[], tokens: number, chars: number}}
 */
export function answerOps(tokens = 2000) {
  const r = rng(42);
  const reasoningTokens = [];
  while (reasoningTokens.length < 250) reasoningTokens.push(...tokenize(`${sentence(r, 6, 12)} `));
  reasoningTokens.length = 250;
  const textTokens = [];
  for (let i = 1; textTokens.length < tokens - 250; i++) textTokens.push(...tokenize(section(r, i)));
  textTokens.length = tokens - 250;

  const ops = [];
  const push = (op) => ops.push({ ...op, seq: ops.length + 1 });
  push({ type: "message.start", id: "st_bench", model: "bench" });
  push({ type: "block.start", index: 0, block: { type: "reasoning", text: "" } });
  for (const t of reasoningTokens) push({ type: "block.delta", index: 0, text: t });
  push({ type: "block.end", index: 0 });
  push({ type: "block.start", index: 1, block: { type: "text", text: "" } });
  for (const t of textTokens) push({ type: "block.delta", index: 1, text: t });
  push({ type: "block.end", index: 1 });
  push({ type: "message.end", status: "completed", finish_reason: "stop", usage: null, error: null });
  const chars = [...reasoningTokens, ...textTokens].join("").length;
  return { ops, tokens, chars };
}
