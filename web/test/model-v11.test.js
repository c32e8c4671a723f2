// Protocol v1.1 in the message model: steps, block.update, step.reset, transient, and the new
// block types, with canonical key order (type, choice, step, attrs, streamed key last).
import assert from "node:assert/strict";
import { test } from "node:test";
import { applyOp, applyOps, canonicalMessage, emptyMessage } from "../src/model.js";
import { AGENT_JSON, agentOps } from "./agent-ops.js";

/** Gives each op its seq (deltas too: applyOps does not need them, resuming does). */
function numbered(ops) {
  return ops.map((op, i) => ({ ...op, seq: i + 1 }));
}

test("new block types keep canonical keys: type, choice, step, attrs, streamed key last", () => {
  const message = emptyMessage("st_v", null);
  const starts = [
    { text: "", step: 2, choice: 1, type: "text" },
    { type: "reasoning", text: "", encrypted: "gAAA==", signature: "sig", step: 0 },
    { output: "", error: true, name: "lookup", call_id: "call_1", type: "tool_result", step: 1 },
    { type: "tool_result", call_id: "call_2", name: null, output: "" },
    { name: "a.png", media_type: "image/png", url: "https://x/a.png", type: "file" },
    { type: "data", value: { n: 1 }, id: "d1", name: "status" },
    { type: "data", name: "progress", id: null },
    { cited_text: "quoted", span: { block: 0, start: 1, end: 4 }, title: "T", url: "https://s", type: "source" },
    { type: "source", url: "https://p", title: null, step: 3 },
  ];
  starts.forEach((block, index) => applyOp(message, { type: "block.start", seq: index + 1, index, block }));
  assert.deepEqual(
    message.blocks.map((b) => JSON.stringify(b)),
    [
      '{"type":"text","choice":1,"step":2,"text":""}',
      '{"type":"reasoning","encrypted":"gAAA==","signature":"sig","text":""}',
      '{"type":"tool_result","step":1,"call_id":"call_1","name":"lookup","error":true,"output":""}',
      '{"type":"tool_result","call_id":"call_2","name":null,"output":""}',
      '{"type":"file","url":"https://x/a.png","media_type":"image/png","name":"a.png"}',
      '{"type":"data","name":"status","id":"d1","value":{"n":1}}',
      '{"type":"data","name":"progress","id":null,"value":null}',
      '{"type":"source","url":"https://s","title":"T","cited_text":"quoted","span":{"block":0,"start":1,"end":4}}',
      '{"type":"source","step":3,"url":"https://p","title":null}',
    ],
  );
  // A snapshot of it reads back to the same bytes.
  const again = canonicalMessage(JSON.parse(JSON.stringify(message)));
  assert.equal(JSON.stringify(again), JSON.stringify(message));
});

test("tool_result output streams in deltas; file and data blocks take no deltas", () => {
  const message = applyOps(
    numbered([
      { type: "message.start", id: "st_d", model: null },
      { type: "block.start", index: 0, block: { type: "tool_result", call_id: "c", name: "f", output: "" } },
      { type: "block.delta", text: '{"temp":' },
      { type: "block.delta", index: 0, text: "21}" },
      { type: "block.start", index: 1, block: { type: "data", name: "s", id: "x", value: 1 } },
      { type: "block.delta", text: "ignored" },
      { type: "block.start", index: 2, block: { type: "file", url: "https://f", media_type: "text/csv", name: null } },
      { type: "block.delta", index: 2, text: "ignored" },
    ]),
  );
  assert.equal(
    JSON.stringify(message.blocks),
    '[{"type":"tool_result","call_id":"c","name":"f","output":"{\\"temp\\":21}"},' +
      '{"type":"data","name":"s","id":"x","value":1},' +
      '{"type":"file","url":"https://f","media_type":"text/csv","name":null}]',
  );
});

test("block.update merges attrs in place (dict.update order), never the streamed key, type, choice or step", () => {
  let message = applyOps(
    numbered([
      { type: "message.start", id: "st_u", model: null },
      { type: "block.start", index: 0, block: { type: "reasoning", step: 1, text: "" } },
      { type: "block.delta", text: "think" },
      { type: "block.end", index: 0 },
      { type: "block.start", index: 1, block: { type: "data", name: "status", id: "s1", value: "searching" } },
      { type: "block.start", index: 2, block: { type: "tool_result", call_id: "c1", name: "f", output: "" } },
      { type: "block.start", index: 3, block: { type: "hologram", depth: 1, text: "x" } },
    ]),
  );
  const updates = [
    { index: 0, set: { encrypted: "E", text: "no", type: "text", choice: 3, step: 9 } },
    { index: 0, set: { signature: "S" } },
    { index: 0, set: { encrypted: "E2" } }, // an existing key keeps its place
    { index: 1, set: { value: { results: 5 } } },
    { index: 1, set: { value: "done", name: "status2" } },
    { index: 2, set: { error: true, output: "no" } },
    { index: 2, set: { bogus: 1 } }, // not a tool_result attribute (dropped, as at block.start)
    { index: 3, set: { depth: 2, colour: "red", text: "no" } }, // unknown type: any attribute
    { index: 9, set: { value: 1 } }, // no such block: ignored
    { index: 1, set: null },
  ];
  for (const u of updates) message = applyOp(message, { type: "block.update", seq: 99, ...u });
  assert.deepEqual(
    message.blocks.map((b) => JSON.stringify(b)),
    [
      '{"type":"reasoning","step":1,"encrypted":"E2","signature":"S","text":"think"}',
      '{"type":"data","name":"status2","id":"s1","value":"done"}',
      '{"type":"tool_result","call_id":"c1","name":"f","error":true,"output":""}',
      '{"type":"hologram","depth":2,"colour":"red","text":"x"}',
    ],
  );
  // A snapshot of the updated blocks reads back to the same bytes.
  assert.equal(JSON.stringify(canonicalMessage(JSON.parse(JSON.stringify(message)))), JSON.stringify(message));
  // Deltas still reach an updated block's streamed key.
  message = applyOp(message, { type: "block.delta", seq: 100, index: 2, text: "out" });
  assert.equal(message.blocks[2].output, "out");
});

test("step.reset removes exactly that step's blocks; later indexes continue from the new length", () => {
  const ops = numbered([
    { type: "message.start", id: "st_s", model: "m" },
    { type: "block.start", index: 0, block: { type: "text", text: "" } },
    { type: "block.delta", text: "first" },
    { type: "block.end", index: 0 },
    { type: "block.start", index: 1, block: { type: "text", step: 1, text: "" } },
    { type: "block.delta", text: "attempt 1" },
    { type: "block.start", index: 2, block: { type: "tool_call", step: 1, id: "c", name: "f", arguments: "" } },
    { type: "step.reset", step: 1 },
    { type: "block.start", index: 1, block: { type: "text", step: 1, text: "" } },
    { type: "block.delta", text: "attempt 2" },
    { type: "block.end", index: 1 },
    { type: "step.reset", step: 7 }, // nothing of that step: nothing happens
    { type: "message.end", status: "completed", finish_reason: "stop", usage: null, error: null },
  ]);
  const message = applyOps(ops);
  assert.equal(
    JSON.stringify(message.blocks),
    '[{"type":"text","text":"first"},{"type":"text","step":1,"text":"attempt 2"}]',
  );
});

test("transient ops never touch the message", () => {
  const base = numbered([
    { type: "message.start", id: "st_t", model: null },
    { type: "block.start", index: 0, block: { type: "text", text: "" } },
    { type: "block.delta", text: "hi" },
  ]);
  const before = JSON.stringify(applyOps(base));
  const withTransient = [...base, { type: "transient", seq: 3, name: "status", value: { blocks: [1] } }];
  assert.equal(JSON.stringify(applyOps(withTransient)), before);
});

test("an agent answer resumed from every seq: latest data value, no transient, no superseded blocks", () => {
  const ops = agentOps();
  assert.equal(ops.filter((op) => op.type === "transient").length, 3);
  assert.equal(JSON.stringify(applyOps(ops)), AGENT_JSON);
  const real = ops.filter((op) => op.type !== "transient");
  for (let cut = 1; cut <= real.length; cut++) {
    // A reader that resumes after `cut`: a snapshot of the state so far, then the ops after it
    // as a live reader gets them (transient ones included, when they come after the cut).
    const snapshot = JSON.parse(JSON.stringify(applyOps(real.slice(0, cut))));
    let message = applyOp(emptyMessage(), { type: "snapshot", seq: cut, message: snapshot });
    for (const op of ops) if (op.seq > cut || (op.type === "transient" && op.seq >= cut)) message = applyOp(message, op);
    assert.equal(JSON.stringify(message), AGENT_JSON, `resumed after seq ${cut}`);
  }
});

test("the package entry point exports the v1.1 helpers", async () => {
  const tw = await import("../src/index.js");
  for (const name of ["canonicalBlock", "streamKey", "eventsUrl", "websocketUrl", "TransientStatus", "dataText"]) {
    assert.equal(typeof tw[name], "function", name);
  }
});
