import assert from "node:assert/strict";
import { test } from "node:test";
import { SseParser } from "../src/sse.js";

const STREAM =
  ': ping\r\nid: 1\r\ndata: {"a":1}\r\n\r\nid: 2\ndata: line one\ndata: line two\n\n' +
  'event: other\rid: 3\rdata:no-space\r\r: comment only\n\ndata: é😀\n\n';

function parseAll(chunks) {
  const parser = new SseParser();
  return chunks.flatMap((chunk) => parser.feed(chunk));
}

test("parses ids, multi-line data, event types, comments and every line ending", () => {
  const events = parseAll([new TextEncoder().encode(STREAM)]);
  assert.deepEqual(events, [
    { id: "1", event: "message", data: '{"a":1}' },
    { id: "2", event: "message", data: "line one\nline two" },
    { id: "3", event: "other", data: "no-space" },
    { id: "3", event: "message", data: "é😀" },
  ]);
});

test("any split of the bytes gives the same events (incl. CRLF and UTF-8 split across reads)", () => {
  const bytes = new TextEncoder().encode(STREAM);
  const whole = parseAll([bytes]);
  for (let i = 0; i <= bytes.length; i++) {
    for (const j of [i, Math.min(bytes.length, i + 1), Math.min(bytes.length, i + 7)]) {
      const parts = [bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)];
      assert.deepEqual(parseAll(parts), whole, `split at ${i}/${j}`);
    }
  }
});

test("an event without a final blank line is not emitted yet", () => {
  const parser = new SseParser();
  assert.deepEqual(parser.feed("id: 5\ndata: x\n"), []);
  assert.deepEqual(parser.feed("\n"), [{ id: "5", event: "message", data: "x" }]);
});

test("an empty read between CR and LF does not end the line twice", () => {
  const parser = new SseParser();
  const events = [...parser.feed("data: a\r"), ...parser.feed(""), ...parser.feed("\ndata: b\n\n")];
  assert.deepEqual(
    events.map((e) => e.data),
    ["a\nb"],
  );
});

test("a large read is parsed in one pass", () => {
  const parser = new SseParser();
  let text = "";
  for (let i = 1; i <= 5000; i++) text += `id:${i}\ndata:{"n":${i}}\n\n`;
  const events = parser.feed(text);
  assert.equal(events.length, 5000);
  assert.equal(events[4999].id, "5000");
});
