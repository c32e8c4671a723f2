// The demo's agent answer as recorded from a real gateway (tests/recordings/demo_agent.events.sse:
// the SSE body a live reader got, transient events included; the first attempt of step 1 was
// superseded). Parsed and applied here, it must give the gateway's stored message byte for byte,
// whatever seq the reader resumed after, and never put the transient events in it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { applyOp, emptyMessage } from "../src/model.js";
import { SseParser } from "../src/sse.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "recordings");
const body = readFileSync(join(dir, "demo_agent.events.sse"));
const expected = readFileSync(join(dir, "demo_agent.message.json"), "utf8").replace(/\n$/, "");

/** The recording's ops, each with its seq (a delta's: its event id), transients kept apart. */
function recordedOps() {
  const parser = new SseParser();
  const ops = [];
  const transients = [];
  for (const event of parser.feed(body)) {
    if (!event.data) continue;
    const op = JSON.parse(event.data);
    if (op.type === "transient") {
      transients.push(op); // (its event has no id line: the last id stays the resume position)
      continue;
    }
    ops.push({ ...op, seq: Number(event.id) });
  }
  return { ops, transients };
}

test("the recorded agent answer applies to the gateway's message, byte for byte", () => {
  const { ops, transients } = recordedOps();
  assert.equal(transients.length, 3);
  const frames = body.toString("utf8").split("\n\n");
  assert.ok(frames.filter((f) => f.includes('"type":"transient"')).every((f) => !/^id:/m.test(f)));
  assert.deepEqual(
    ops.map((op) => op.seq),
    ops.map((_, i) => i + 1),
  );
  assert.equal(ops.filter((op) => op.type === "step.reset").length, 1);
  assert.equal(ops.filter((op) => op.type === "block.update" && op.index === 0).length, 5);
  let message = emptyMessage();
  for (const op of [...ops.slice(0, 5), ...transients, ...ops.slice(5)]) {
    if (op.type !== "transient") message = applyOp(message, op);
  }
  assert.equal(JSON.stringify(message), expected);
  const final = JSON.parse(expected);
  assert.equal(final.blocks[0].value, "done: 2 sources cited");
  assert.equal(final.blocks.filter((b) => b.type === "reasoning").length, 1);
});

test("resumed after any seq (from a snapshot of what came before), it ends the same", () => {
  const { ops } = recordedOps();
  for (let cut = 0; cut < ops.length; cut++) {
    let before = emptyMessage();
    for (const op of ops.slice(0, cut)) before = applyOp(before, op);
    let message = applyOp(emptyMessage(), {
      type: "snapshot",
      seq: cut,
      message: JSON.parse(JSON.stringify(before)),
    });
    for (const op of ops.slice(cut)) message = applyOp(message, op);
    assert.equal(JSON.stringify(message), expected, `resumed after seq ${cut}`);
  }
});
