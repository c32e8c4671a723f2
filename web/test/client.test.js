// The client against a small real HTTP server on 127.0.0.1 that serves an op log over SSE and
// misbehaves on purpose: drops connections, repeats ops, skips ops, fails with 503.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { Cursor, GatewayError, cancelStream, createStream, eventsUrl, subscribe } from "../src/client.js";
import { applyOps } from "../src/model.js";

function makeOps(n) {
  const ops = [
    { type: "message.start", seq: 1, id: "st_t", model: "mock" },
    { type: "block.start", seq: 2, index: 0, block: { type: "text", text: "" } },
  ];
  for (let i = 0; i < n; i++) ops.push({ type: "block.delta", seq: ops.length + 1, index: 0, text: `w${i} ` });
  ops.push({ type: "block.end", seq: ops.length + 1, index: 0 });
  ops.push({
    type: "message.end",
    seq: ops.length + 1,
    status: "completed",
    finish_reason: "stop",
    usage: null,
    error: null,
  });
  return ops;
}

// As the gateway sends them: a live delta states no seq of its own (its event id is its seq).
const sse = (op) => {
  // The reader-only end a gateway sends when it gives up reading for one reader: no id line.
  if (op.readerOnly) {
    const { readerOnly, ...end } = op;
    return `data: ${JSON.stringify(end)}\n\n`;
  }
  const { seq, ...rest } = op;
  return `id: ${seq}\ndata: ${JSON.stringify(op.type === "block.delta" ? rest : op)}\n\n`;
};

/**
 * Serves `ops` for stream st_t. `plan(connection, after)` returns how to answer the
 * connection-th request: {status} or {from, count, close} (send ops with seq > from, at most
 * count of them, then end the response if close).
 */
async function withServer(ops, plan, fn) {
  const requests = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (req.method === "POST" && url.pathname === "/v1/streams") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        requests.push({ method: "POST", path: url.pathname, body: JSON.parse(body) });
        res.writeHead(201, { "content-type": "application/json" });
        res.end(JSON.stringify({ id: "st_t", status: "in_progress", events_url: "/v1/streams/st_t/events" }));
      });
      return;
    }
    if (req.method === "POST" && url.pathname === "/v1/streams/st_t/cancel") {
      requests.push({ method: "POST", path: url.pathname });
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"id":"st_t","status":"cancelled"}');
      return;
    }
    if (url.pathname !== "/v1/streams/st_t/events") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"message":"unknown stream"}}');
      return;
    }
    const after = Number(url.searchParams.get("after") ?? req.headers["last-event-id"] ?? 0);
    requests.push({
      after,
      lastEventId: req.headers["last-event-id"] ?? null,
      catchup: url.searchParams.get("catchup"),
    });
    const step = plan(requests.length, after);
    if (step.status) {
      res.writeHead(step.status);
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
    res.write(": hello\n\n");
    const chosen = ops.filter((op) => op.seq > (step.from ?? after)).slice(0, step.count ?? Infinity);
    // Write in odd-sized pieces so events straddle reads.
    const text = chosen.map(sse).join("");
    for (let i = 0; i < text.length; i += 37) res.write(text.slice(i, i + 37));
    if (step.close === false) return; // leave it hanging: the client must stop on message.end
    // A reset once the data has had time to reach the client (a destroy right away would
    // discard it unsent).
    if (step.destroy) setTimeout(() => res.destroy(), 30);
    else res.end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    await fn(base, requests);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

test("Cursor applies the next seq, skips repeats, flags gaps, accepts snapshots that jump", () => {
  const cursor = new Cursor(0);
  assert.equal(cursor.accept({ type: "message.start", seq: 1 }), "apply");
  assert.equal(cursor.accept({ type: "block.start", seq: 1 }), "skip");
  assert.equal(cursor.accept({ type: "block.delta", seq: 3 }), "gap");
  assert.equal(cursor.seq, 1);
  assert.equal(cursor.accept({ type: "snapshot", seq: 40 }), "apply");
  assert.equal(cursor.accept({ type: "block.delta", seq: 41 }), "apply");
  assert.equal(cursor.seq, 41);
});

test("a stream read in one go yields exactly the ops' message", async () => {
  const ops = makeOps(20);
  await withServer(ops, () => ({ close: false }), async (base) => {
    const seen = [];
    const sub = subscribe(base, "st_t", { onOp: (op) => seen.push(op.seq) });
    const message = await sub.done;
    assert.deepEqual(seen, ops.map((op) => op.seq));
    assert.equal(JSON.stringify(message), JSON.stringify(applyOps(ops)));
    assert.equal(sub.state, "done");
  });
});

test("drops mid-stream resume from the last seq: nothing lost, nothing repeated", async () => {
  const ops = makeOps(60);
  // Each connection delivers 7 ops then dies (alternating clean end and reset).
  await withServer(ops, (n) => ({ count: 7, destroy: n % 2 === 0 }), async (base, requests) => {
    const seen = [];
    const sub = subscribe(base, "st_t", { retryMs: 5, onOp: (op) => seen.push(op.seq) });
    const message = await sub.done;
    assert.deepEqual(seen, ops.map((op) => op.seq));
    assert.equal(JSON.stringify(message), JSON.stringify(applyOps(ops)));
    assert.deepEqual(
      requests.map((r) => r.after),
      requests.map((_, i) => i * 7),
    );
    assert.equal(requests[0].lastEventId, null);
    assert.equal(requests[1].lastEventId, "7");
  });
});

test("ops the server repeats are skipped; a gap makes the client reconnect from its seq", async () => {
  const ops = makeOps(30);
  const plan = (n, after) => {
    if (n === 1) return { count: 10 }; // seq 1..10
    if (n === 2) return { from: after - 4, count: 12 }; // repeats 7..10, then 11..18
    if (n === 3) return { from: after + 3 }; // skips 19..21: a gap
    return {};
  };
  await withServer(ops, plan, async (base, requests) => {
    const seen = [];
    const sub = subscribe(base, "st_t", { retryMs: 5, onOp: (op) => seen.push(op.seq) });
    const message = await sub.done;
    assert.deepEqual(seen, ops.map((op) => op.seq));
    assert.equal(JSON.stringify(message), JSON.stringify(applyOps(ops)));
    assert.deepEqual(requests.map((r) => r.after), [0, 10, 18, 18]);
  });
});

test("a snapshot op replaces the state and the stream continues after its seq", async () => {
  const ops = makeOps(30);
  const snapshotAt = 20;
  const snapshot = {
    type: "snapshot",
    seq: snapshotAt,
    message: JSON.parse(JSON.stringify(applyOps(ops.slice(0, snapshotAt)))),
  };
  // The server's log only retains ops after 20: it answers with the snapshot, then the rest.
  const withSnap = [snapshot, ...ops.slice(snapshotAt)];
  await withServer(withSnap, () => ({ from: 0 }), async (base) => {
    const seen = [];
    const sub = subscribe(base, "st_t", { onOp: (op) => seen.push(op.seq) });
    const message = await sub.done;
    assert.deepEqual(seen, [20, ...ops.slice(snapshotAt).map((op) => op.seq)]);
    assert.equal(JSON.stringify(message), JSON.stringify(applyOps(ops)));
  });
});

test("5xx answers are retried; an unknown stream (404) is a fatal GatewayError", async () => {
  const ops = makeOps(5);
  await withServer(ops, (n) => (n <= 2 ? { status: 503 } : {}), async (base, requests) => {
    const states = [];
    const sub = subscribe(base, "st_t", { retryMs: 5, onState: (s) => states.push(s) });
    const message = await sub.done;
    assert.equal(message.status, "completed");
    assert.equal(requests.length, 3);
    // The first connection is reported too (docs/web.md lists "connecting").
    assert.deepEqual(states, ["connecting", "reconnecting", "connecting", "reconnecting", "connecting", "open", "done"]);
  });
  await withServer(ops, () => ({}), async (base) => {
    const states = [];
    const sub = subscribe(base, "st_nope", { onState: (s) => states.push(s) });
    await assert.rejects(sub.done, (e) => e instanceof GatewayError && e.status === 404);
    assert.equal(states.at(-1), "error");
  });
});

test("close() stops following; createStream and cancelStream speak the gateway API", async () => {
  const ops = makeOps(5);
  await withServer(ops, () => ({ count: 2, close: false }), async (base, requests) => {
    const created = await createStream(base, { model: "mock", messages: [], stream: true });
    assert.equal(created.id, "st_t");
    assert.equal(requests[0].body.model, "mock");
    const sub = subscribe(base, created.id, {});
    while (sub.seq < 2) await new Promise((r) => setTimeout(r, 5));
    sub.close();
    await sub.done;
    assert.equal(sub.state, "closed");
    await cancelStream(base, "st_t");
    assert.equal(requests.at(-1).path, "/v1/streams/st_t/cancel");
  });
});

test("reconnect() drops a live (hanging) connection and resumes after the last seq", async () => {
  const ops = makeOps(10);
  const plan = (n) => (n === 1 ? { count: 4, close: false } : {});
  await withServer(ops, plan, async (base, requests) => {
    const seen = [];
    const sub = subscribe(base, "st_t", { retryMs: 5, onOp: (op) => seen.push(op.seq) });
    while (sub.seq < 4) await new Promise((r) => setTimeout(r, 5));
    sub.reconnect();
    const message = await sub.done;
    assert.deepEqual(seen, ops.map((op) => op.seq));
    assert.equal(JSON.stringify(message), JSON.stringify(applyOps(ops)));
    assert.deepEqual(requests.map((r) => r.after), [0, 4]);
  });
});

test("a 204 answer (nothing more will come) ends the subscription instead of retrying forever", async () => {
  const ops = makeOps(3);
  await withServer(ops, (n) => (n === 1 ? { count: ops.length - 1 } : { status: 204 }), async (base) => {
    const sub = subscribe(base, "st_t", { retryMs: 5 });
    await sub.done;
    assert.equal(sub.state, "done");
    assert.equal(sub.seq, ops.length - 1);
  });
});

test("catchup: 'exact' asks every connection for the uncompacted log; the default asks nothing", async () => {
  assert.equal(eventsUrl("http://h", "st_t", { after: 3, catchup: "exact" }), "http://h/v1/streams/st_t/events?after=3&catchup=exact");
  assert.equal(eventsUrl("http://h", "st_t", { catchup: "compact" }), "http://h/v1/streams/st_t/events");
  const ops = makeOps(6);
  let n = 0;
  await withServer(ops, () => (++n === 1 ? { count: 3, destroy: true } : {}), async (base, requests) => {
    const sub = subscribe(base, "st_t", { catchup: "exact", retryMs: 5 });
    await sub.done;
    assert.ok(requests.length >= 2);
    assert.ok(requests.every((r) => r.catchup === "exact"), JSON.stringify(requests));
    assert.deepEqual(sub.message, applyOps(ops));
  });
  await withServer(ops, () => ({}), async (base, requests) => {
    await subscribe(base, "st_t", {}).done;
    assert.equal(requests[0].catchup, null);
  });
});

test("Cursor lets a merged delta (one that states its seq) jump; a live delta never does", () => {
  const cursor = new Cursor(2);
  assert.equal(cursor.accept({ type: "block.delta", seq: 9 }), "gap");
  assert.equal(cursor.accept({ type: "block.delta", seq: 9, index: 0 }, true), "apply");
  assert.equal(cursor.seq, 9);
  assert.equal(cursor.accept({ type: "block.end", seq: 12 }, true), "gap"); // (only deltas merge)
  assert.equal(cursor.accept({ type: "block.end", seq: 10 }, true), "apply");
});

test("a reader-only end (the gateway's Redis stayed away) is reported, then the stream resumes after it", async () => {
  const ops = makeOps(20);
  const error = { message: "lost connection to Redis", type: "hub_unavailable", code: null };
  // Sent after op 12 on the first connection only (a resume asks for what follows 12).
  ops.splice(12, 0, { type: "message.end", seq: 12, status: "failed", finish_reason: null, usage: null, error, readerOnly: true });
  const plan = (n) => (n === 1 ? { count: 13 } : {});
  await withServer(ops, plan, async (base, requests) => {
    const seen = [];
    const states = [];
    const sub = subscribe(base, "st_t", {
      retryMs: 5,
      onOp: (op) => seen.push(op.seq),
      onState: (state, detail) => states.push([state, detail]),
    });
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("no end")), 5000));
    let message;
    try {
      message = await Promise.race([sub.done, timeout]);
    } finally {
      sub.close();
    }
    const real = ops.filter((op) => !op.readerOnly);
    assert.deepEqual(seen, real.map((op) => op.seq)); // the reader-only end is not applied
    assert.equal(JSON.stringify(message), JSON.stringify(applyOps(real)));
    assert.ok(states.some(([state, detail]) => state === "reconnecting" && detail?.type === "hub_unavailable"));
    assert.deepEqual(requests.map((r) => r.after), [0, 12]);
  });
});
