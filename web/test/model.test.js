import assert from "node:assert/strict";
import { test } from "node:test";
import { applyOp, applyOps, canonicalMessage, emptyMessage } from "../src/model.js";

const OPS = [
  { type: "message.start", seq: 1, id: "st_1", model: "mock-reasoning" },
  { type: "block.start", seq: 2, index: 0, block: { type: "reasoning", text: "" } },
  { type: "block.delta", seq: 3, index: 0, text: "Let me " },
  { type: "block.delta", seq: 4, index: 0, text: "think" },
  { type: "block.end", seq: 5, index: 0 },
  {
    type: "block.start",
    seq: 6,
    index: 1,
    block: { name: "get_weather", id: "call_1", type: "tool_call", arguments: "" },
  },
  { type: "block.delta", seq: 7, index: 1, text: '{"city":"Pa' },
  { type: "block.delta", seq: 8, index: 1, text: 'ris"}' },
  { type: "block.end", seq: 9, index: 1 },
  {
    type: "message.end",
    seq: 10,
    status: "completed",
    finish_reason: "tool_calls",
    usage: { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 },
    error: null,
  },
];

test("ops build the canonical message with keys in protocol order", () => {
  const message = applyOps(OPS);
  assert.equal(
    JSON.stringify(message),
    '{"id":"st_1","model":"mock-reasoning","status":"completed","finish_reason":"tool_calls",' +
      '"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21},"error":null,' +
      '"blocks":[{"type":"reasoning","text":"Let me think"},' +
      '{"type":"tool_call","id":"call_1","name":"get_weather","arguments":"{\\"city\\":\\"Paris\\"}"}]}',
  );
});

test("an in-progress message says so and has no end fields", () => {
  const message = applyOps(OPS.slice(0, 4));
  assert.equal(message.status, "in_progress");
  assert.equal(message.finish_reason, null);
  assert.equal(message.usage, null);
  assert.deepEqual(message.blocks, [{ type: "reasoning", text: "Let me think" }]);
});

test("every block type keeps its canonical keys; choice only for k > 0, right after type", () => {
  const message = emptyMessage("st_2", null);
  const starts = [
    { type: "text", text: "", choice: 0 },
    { text: "", choice: 1, type: "text" },
    { type: "refusal", text: "" },
    { type: "tool_call", id: null, name: null, arguments: "" },
    { title: null, url: "https://example.com", type: "source" },
    { type: "image", url: "data:image/png;base64,AAAA" },
  ];
  starts.forEach((block, index) => applyOp(message, { type: "block.start", seq: index + 1, index, block }));
  assert.equal(
    JSON.stringify(message.blocks),
    '[{"type":"text","text":""},{"type":"text","choice":1,"text":""},{"type":"refusal","text":""},' +
      '{"type":"tool_call","id":null,"name":null,"arguments":""},' +
      '{"type":"source","url":"https://example.com","title":null},' +
      '{"type":"image","url":"data:image/png;base64,AAAA"}]',
  );
});

test("a failed end carries a canonical error object", () => {
  const message = applyOps([
    { type: "message.start", seq: 1, id: "st_3", model: null },
    {
      type: "message.end",
      seq: 2,
      status: "failed",
      finish_reason: null,
      usage: null,
      error: { code: 503, type: "upstream_error", message: "boom", extra: 1 },
    },
  ]);
  assert.equal(
    JSON.stringify(message),
    '{"id":"st_3","model":null,"status":"failed","finish_reason":null,"usage":null,' +
      '"error":{"message":"boom","type":"upstream_error","code":503},"blocks":[]}',
  );
});

test("unknown op types and unknown fields are ignored; unknown block types are kept", () => {
  const ops = [
    { type: "message.start", seq: 1, id: "st_4", model: "m", future: true },
    { type: "something.new", seq: 2, index: 0 },
    { type: "block.start", seq: 3, index: 0, block: { type: "hologram", text: "", depth: 3 } },
    { type: "block.delta", seq: 4, index: 0, text: "3d" },
    { type: "block.start", seq: 5, index: 1, block: { type: "text", text: "", extra: [1] } },
    { type: "block.delta", seq: 6, index: 1, text: "hi", also: "ignored" },
    { type: "block.start", seq: 7, index: 2, block: { type: "widget", choice: 1 } },
    { type: "block.delta", seq: 8, index: 2, text: "dropped: no text field" },
  ];
  const message = applyOps(ops);
  assert.equal(JSON.stringify(message.blocks[1]), '{"type":"text","text":"hi"}');
  // Kept as sent, text last (as Python's Block.to_dict), so a snapshot shows the same thing.
  assert.equal(JSON.stringify(message.blocks[0]), '{"type":"hologram","depth":3,"text":"3d"}');
  assert.equal(JSON.stringify(message.blocks[2]), '{"type":"widget","choice":1}');
  const again = canonicalMessage(JSON.parse(JSON.stringify(message)));
  assert.equal(JSON.stringify(again), JSON.stringify(message));
});

test("a snapshot replaces the whole message, then later ops continue from it", () => {
  let message = applyOps(OPS.slice(0, 3));
  const snap = applyOps(OPS.slice(0, 7));
  message = applyOp(message, { type: "snapshot", seq: 7, message: JSON.parse(JSON.stringify(snap)) });
  for (const op of OPS.slice(7)) message = applyOp(message, op);
  assert.equal(JSON.stringify(message), JSON.stringify(applyOps(OPS)));
});

test("canonicalMessage reorders keys of a message from elsewhere", () => {
  const raw = {
    blocks: [{ text: "x", type: "text" }],
    error: null,
    usage: null,
    finish_reason: "stop",
    status: "completed",
    model: "m",
    id: "st_5",
  };
  assert.equal(
    JSON.stringify(canonicalMessage(raw)),
    '{"id":"st_5","model":"m","status":"completed","finish_reason":"stop","usage":null,"error":null,' +
      '"blocks":[{"type":"text","text":"x"}]}',
  );
});
