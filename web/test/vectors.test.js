// Shared vectors: op logs produced by the Python implementation, applied here, must give
// byte-identical canonical message JSON. Every `*.ops.jsonl` in tests/vectors/ is checked (its
// views/ subfolder holds the views' inputs and frames, checked by tests/test_views.py), so vectors added on the Python side are picked up without touching this file:
// the final message byte for byte, resuming from a snapshot after every seq, and rendering.
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { JSDOM } from "jsdom";
import { createMarkdown } from "../src/markdown.js";
import { applyOp, applyOps, emptyMessage } from "../src/model.js";
import { MessageView } from "../src/render.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "vectors");

/** @param {string} root */
function findVectors(root) {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ops.jsonl"))
    .map((e) => join(e.parentPath ?? e.path, e.name))
    .sort();
}

const files = findVectors(dir);
if (files.length === 0) {
  test("shared vectors", { skip: `no vectors in ${dir} yet` }, () => {});
}

/**
 * The op log with every op's seq filled in as a reader counts: a delta is the previous op's seq
 * plus one; a transient op repeats the last real seq.
 * @param {string} file
 */
function readOps(file) {
  let seq = 0;
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const op = JSON.parse(line);
      if (op.type === "transient") return { ...op, seq: op.seq ?? seq };
      seq = typeof op.seq === "number" ? op.seq : seq + 1;
      return { ...op, seq };
    });
}

const { window } = new JSDOM("<!doctype html><body></body>");
const markdown = createMarkdown(window);

for (const file of files) {
  const name = relative(dir, file).slice(0, -".ops.jsonl".length);
  const expectedFile = file.slice(0, -".ops.jsonl".length) + ".message.json";
  test(`vector ${name}: JS message JSON is byte-identical to Python's`, () => {
    const ops = readOps(file);
    const expected = readFileSync(expectedFile).toString("utf8").replace(/\n$/, "");
    const actual = Buffer.from(JSON.stringify(applyOps(ops)), "utf8");
    assert.equal(actual.toString("utf8"), expected);
    // Byte-for-byte, beyond string equality (encoding of every character).
    assert.ok(actual.equals(Buffer.from(expected, "utf8")));
  });

  test(`vector ${name}: resumed from a snapshot after any seq, and rendered, it ends the same`, () => {
    const ops = readOps(file);
    const expected = readFileSync(expectedFile).toString("utf8").replace(/\n$/, "");
    const real = ops.filter((op) => op.type !== "transient" && op.type !== "snapshot");
    if (real.length !== ops.filter((op) => op.type !== "transient").length) return; // logs with snapshots: above only
    for (let cut = 1; cut < real.length; cut++) {
      const state = JSON.parse(JSON.stringify(applyOps(real.slice(0, cut))));
      let message = applyOp(emptyMessage(), { type: "snapshot", seq: real[cut - 1].seq, message: state });
      for (const op of real.slice(cut)) message = applyOp(message, op);
      assert.equal(JSON.stringify(message), expected, `resumed after seq ${real[cut - 1].seq}`);
    }
    // The renderer shows one element per block, in order, whatever the ops (a frame per op).
    const container = window.document.createElement("div");
    let queued = [];
    const view = new MessageView(container, { markdown, schedule: (cb) => queued.push(cb) });
    let message = emptyMessage();
    for (const op of ops) {
      message = applyOp(message, op);
      view.update(op, message);
      const now = queued;
      queued = [];
      for (const cb of now) cb();
    }
    const final = JSON.parse(expected);
    assert.deepEqual(
      [...container.children].map((e) => [e.dataset.blockType, e.dataset.blockIndex]),
      final.blocks.map((b, i) => [b.type, String(i)]),
    );
  });
}
