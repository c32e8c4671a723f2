// Main-thread cost of rendering a streamed ~2,000-token answer in Chromium: per-block incremental
// rendering vs re-rendering the whole answer on every delta. Same page, same ops, no network.
//
//   node bench/render-bench.mjs [--runs 5] [--tokens 2000] [--json]
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { answerOps } from "./answer.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    tokens: { type: "string", default: "2000" },
    json: { type: "boolean", default: false },
  },
});
const RUNS = Number(values.runs);

const bundle = await build({
  entryPoints: [join(here, "page.js")],
  bundle: true,
  write: false,
  format: "iife",
  minify: true,
  logLevel: "warning",
});
const css = await readFile(join(here, "..", "page", "style.css"), "utf8");
const { ops, tokens, chars } = answerOps(Number(values.tokens));

const browser = await chromium.launch({
  executablePath: process.env.TOKENWIRE_CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
await page.setContent(`<!doctype html><html><head><style>${css}</style></head><body><main><article id="answer" class="answer"></article></main></body></html>`);
await page.addScriptTag({ content: bundle.outputFiles[0].text });
const cdp = await page.context().newCDPSession(page);
await cdp.send("Performance.enable");

async function metrics() {
  const { metrics: list } = await cdp.send("Performance.getMetrics");
  return Object.fromEntries(list.map((m) => [m.name, m.value]));
}

/**
 * One measured run. Scripting (op application, Markdown, sanitizing, DOM updates) and the
 * frames' style+layout are timed inside the page; the main thread's total comes from CDP.
 */
async function measure(mode, flushEvery) {
  const before = await metrics();
  const result = await page.evaluate(([m, o, f]) => window.bench.run(m, o, f), [mode, ops, flushEvery]);
  const after = await metrics();
  return {
    script: result.script,
    layout: result.layout,
    task: (after.TaskDuration - before.TaskDuration) * 1000,
    renders: result.renders,
    text: result.text,
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const configs = [
  { name: "naive: whole answer re-rendered on every delta", mode: "naive", flushEvery: 1 },
  { name: "incremental, a frame per delta (no batching)", mode: "incremental", flushEvery: 1 },
  { name: "incremental, a frame per 4 deltas", mode: "incremental", flushEvery: 4 },
];
await measure("incremental", 1); // warm up the JIT on both paths
await measure("naive", 1);
const rows = [];
let reference = null;
for (const config of configs) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await measure(config.mode, config.flushEvery));
  const texts = new Set(runs.map((r) => r.text));
  if (reference === null) reference = runs[0].text;
  // Both renderers must end with the same visible answer.
  const sameText = texts.size === 1 && runs[0].text.replace(/Reasoning/g, "") === reference.replace(/Reasoning/g, "");
  rows.push({
    name: config.name,
    script_ms: median(runs.map((r) => r.script)),
    layout_ms: median(runs.map((r) => r.layout)),
    task_ms: median(runs.map((r) => r.task)),
    dom_writes: runs[0].renders,
    same_text: sameText,
  });
}
await browser.close();

const naive = rows[0];
for (const row of rows) row.script_vs_naive = row.script_ms / naive.script_ms;
if (values.json) {
  console.log(JSON.stringify({ tokens, chars, ops: ops.length, runs: RUNS, rows }, null, 2));
} else {
  console.log(`answer: ${tokens} tokens, ${chars} chars, ${ops.length} ops; median of ${RUNS} runs (Chromium, CDP metrics)`);
  console.log("| renderer | scripting ms | style+layout ms | main-thread task ms | DOM writes | scripting vs naive |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.script_ms.toFixed(1)} | ${r.layout_ms.toFixed(1)} | ${r.task_ms.toFixed(1)} | ${r.dom_writes} | ${(100 * r.script_vs_naive).toFixed(1)}% |`,
    );
  }
  if (!rows.every((r) => r.same_text)) console.log("WARNING: renderers ended with different text");
}
