// A v1.1 agent answer shared by the model, client and render tests (not a test file itself).

/**
 * The held-out style answer: two steps, the first attempt of step 1 superseded once, tool calls
 * and results, a data block updated 5 times, 3 transient events, cited text.
 */
export function agentOps() {
  const ops = [];
  let seq = 0;
  const push = (op) => ops.push(op.type === "transient" ? { ...op, seq } : { ...op, seq: ++seq });
  push({ type: "message.start", id: "st_agent", model: "mock-agent" });
  push({ type: "block.start", index: 0, block: { type: "reasoning", text: "" } });
  push({ type: "block.delta", text: "I should look " });
  push({ type: "block.delta", text: "it up." });
  push({ type: "block.end", index: 0 });
  push({ type: "block.update", index: 0, set: { signature: "sig-0" } });
  push({ type: "block.start", index: 1, block: { type: "data", name: "status", id: "st", value: "searching…" } });
  push({ type: "block.end", index: 1 });
  push({ type: "transient", name: "progress", value: 0.1 });
  push({ type: "block.start", index: 2, block: { type: "tool_call", id: "call_1", name: "search", arguments: "" } });
  push({ type: "block.delta", text: '{"q":"tide"}' });
  push({ type: "block.end", index: 2 });
  push({ type: "block.start", index: 3, block: { type: "tool_result", call_id: "call_1", name: "search", output: "" } });
  push({ type: "block.delta", text: "5 results" });
  push({ type: "block.end", index: 3 });
  for (let i = 1; i <= 4; i++) push({ type: "block.update", index: 1, set: { value: `step ${i}` } });
  push({ type: "transient", name: "progress", value: 0.5 });
  // Step 1, first attempt: fails halfway and is superseded.
  push({ type: "block.start", index: 4, block: { type: "text", step: 1, text: "" } });
  push({ type: "block.delta", text: "The tide is hi" });
  push({ type: "step.reset", step: 1 });
  push({ type: "block.start", index: 4, block: { type: "text", step: 1, text: "" } });
  push({ type: "block.delta", text: "The tide is high at 6 pm." });
  push({ type: "block.end", index: 4 });
  push({
    type: "block.start",
    index: 5,
    block: { type: "source", step: 1, url: "https://tides.example", title: "Tides", span: { block: 4, start: 4, end: 16 } },
  });
  push({ type: "block.end", index: 5 });
  push({ type: "block.update", index: 1, set: { value: "done" } });
  push({ type: "transient", name: "progress", value: 1 });
  push({ type: "message.end", status: "completed", finish_reason: "stop", usage: null, error: null });
  return ops;
}

export const AGENT_JSON =
  '{"id":"st_agent","model":"mock-agent","status":"completed","finish_reason":"stop","usage":null,"error":null,"blocks":[' +
  '{"type":"reasoning","signature":"sig-0","text":"I should look it up."},' +
  '{"type":"data","name":"status","id":"st","value":"done"},' +
  '{"type":"tool_call","id":"call_1","name":"search","arguments":"{\\"q\\":\\"tide\\"}"},' +
  '{"type":"tool_result","call_id":"call_1","name":"search","output":"5 results"},' +
  '{"type":"text","step":1,"text":"The tide is high at 6 pm."},' +
  '{"type":"source","step":1,"url":"https://tides.example","title":"Tides","span":{"block":4,"start":4,"end":16}}]}';
