// The client's credentials (apiKey header, read token in the query), transient ops, and no
// callbacks inside the Subscription constructor — against a real HTTP server on 127.0.0.1.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import {
  GatewayError,
  cancelStream,
  createStream,
  eventsUrl,
  getSnapshot,
  listModels,
  subscribe,
  websocketUrl,
} from "../src/client.js";
import { applyOps } from "../src/model.js";
import { AGENT_JSON, agentOps } from "./agent-ops.js";

const KEY = "sk-test-key";
const TOKEN = "tok.abc/+=";

/**
 * A gateway stand-in that requires `Authorization: Bearer KEY` or `?token=TOKEN` (as the real one
 * does: 401 otherwise) and serves `ops` for stream st_a. Records every request.
 */
async function withGateway(ops, fn) {
  const requests = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const auth = req.headers.authorization ?? null;
    requests.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), auth });
    if (auth !== `Bearer ${KEY}` && url.searchParams.get("token") !== TOKEN) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end('{"error":{"message":"missing API key","type":"authentication_error"}}');
      return;
    }
    const json = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.method === "POST" && url.pathname === "/v1/streams") {
      req.resume();
      req.on("end", () => json(201, { id: "st_a", status: "in_progress", events_url: "/v1/streams/st_a/events" }));
    } else if (url.pathname === "/v1/streams/st_a") {
      const real = ops.filter((op) => op.type !== "transient");
      json(200, { id: "st_a", status: "completed", seq: real.at(-1).seq, message: applyOps(real) });
    } else if (url.pathname === "/v1/streams/st_a/cancel") {
      json(200, { id: "st_a", status: "cancelled" });
    } else if (url.pathname === "/v1/models") {
      json(200, { object: "list", data: [{ id: "mock" }, { id: "mock-agent" }] });
    } else if (url.pathname === "/v1/streams/st_a/events") {
      const after = Number(url.searchParams.get("after") ?? 0);
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (const op of ops) {
        if (op.seq <= after && !(op.type === "transient" && op.seq === after)) continue;
        // A transient event has no id line: a reconnect never skips a real op.
        const data = op.type === "block.delta" ? { ...op, seq: undefined } : op;
        res.write(`${op.type === "transient" ? "" : `id:${op.seq}\n`}data:${JSON.stringify(data)}\n\n`);
      }
      res.end();
    } else {
      json(404, { error: { message: "unknown" } });
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  try {
    await fn(`http://127.0.0.1:${server.address().port}`, requests);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

test("apiKey goes in the Authorization header of every call, never in the URL", async () => {
  const ops = agentOps();
  await withGateway(ops, async (base, requests) => {
    const auth = { apiKey: KEY };
    assert.deepEqual(await listModels(base, auth), ["mock", "mock-agent"]);
    const created = await createStream(base, { model: "mock-agent", messages: [] }, auth);
    const snap = await getSnapshot(base, created.id, auth);
    assert.equal(JSON.stringify(snap.message), AGENT_JSON);
    const message = await subscribe(base, created.id, { ...auth }).done;
    assert.equal(JSON.stringify(message), AGENT_JSON);
    await cancelStream(base, created.id, auth);
    assert.deepEqual(
      requests.map((r) => [r.method, r.path]),
      [
        ["GET", "/v1/models"],
        ["POST", "/v1/streams"],
        ["GET", "/v1/streams/st_a"],
        ["GET", "/v1/streams/st_a/events"],
        ["POST", "/v1/streams/st_a/cancel"],
      ],
    );
    for (const r of requests) {
      assert.equal(r.auth, `Bearer ${KEY}`);
      assert.equal(r.query.api_key, undefined);
      assert.equal(r.query.token, undefined);
    }
  });
});

test("without credentials every call is a 401 GatewayError (the subscription gives up)", async () => {
  await withGateway(agentOps(), async (base) => {
    const is401 = (e) => e instanceof GatewayError && e.status === 401;
    await assert.rejects(listModels(base), is401);
    await assert.rejects(createStream(base, { model: "mock" }), is401);
    await assert.rejects(getSnapshot(base, "st_a"), is401);
    await assert.rejects(cancelStream(base, "st_a", { apiKey: "wrong" }), is401);
    const states = [];
    const sub = subscribe(base, "st_a", { retryMs: 5, onState: (s) => states.push(s) });
    await assert.rejects(sub.done, is401);
    assert.equal(states.at(-1), "error");
  });
});

test("a read token goes in ?token= (a function is asked again on every connection)", async () => {
  const ops = agentOps();
  await withGateway(ops, async (base, requests) => {
    const snap = await getSnapshot(base, "st_a", { token: TOKEN });
    assert.equal(snap.id, "st_a");
    let asked = 0;
    const token = async () => {
      asked += 1;
      return TOKEN;
    };
    const message = await subscribe(base, "st_a", { token }).done;
    assert.equal(JSON.stringify(message), AGENT_JSON);
    assert.equal(asked, 1);
    for (const r of requests) {
      assert.equal(r.query.token, TOKEN);
      assert.equal(r.auth, null);
    }
  });
});

test("eventsUrl / websocketUrl put credentials in the query (EventSource and WebSocket send no headers)", () => {
  assert.equal(
    eventsUrl("http://gw:8787/", "st 1", { after: 4, apiKey: "k&1", token: "t=2" }),
    "http://gw:8787/v1/streams/st%201/events?after=4&api_key=k%261&token=t%3D2",
  );
  assert.equal(eventsUrl("", "st_1"), "/v1/streams/st_1/events");
  assert.equal(websocketUrl("https://gw", "st_1", { token: "t" }), "wss://gw/v1/streams/st_1/ws?token=t");
  assert.equal(websocketUrl("http://gw/tw", "st_1", { apiKey: "k" }), "ws://gw/tw/v1/streams/st_1/ws?api_key=k");
});

test("transient ops reach onTransient only: not applied, not counted, no seq of their own", async () => {
  const ops = agentOps();
  await withGateway(ops, async (base) => {
    const seen = [];
    const transients = [];
    const sub = subscribe(base, "st_a", {
      apiKey: KEY,
      onOp: (op) => seen.push(op.seq),
      onTransient: (op, message) => transients.push([op.name, op.value, message.blocks.length]),
    });
    const message = await sub.done;
    const real = ops.filter((op) => op.type !== "transient");
    assert.deepEqual(seen, real.map((op) => op.seq));
    assert.equal(sub.opsApplied, real.length);
    assert.deepEqual(transients, [
      ["progress", 0.1, 2],
      ["progress", 0.5, 4],
      ["progress", 1, 6],
    ]);
    assert.equal(JSON.stringify(message), AGENT_JSON);
  });
});

test("a subscription to a finished stream reports done after its constructor, never inside it", async () => {
  const ops = agentOps();
  const finished = applyOps(ops);
  const states = [];
  let sub = null;
  let sawSub = null;
  sub = subscribe("http://127.0.0.1:9", "st_a", {
    after: 30,
    message: finished,
    onState(state) {
      states.push(state);
      sawSub = sub; // the caller already holds the subscription
    },
  });
  assert.deepEqual(states, [], "a callback ran inside the constructor");
  const message = await sub.done;
  assert.deepEqual(states, ["done"]);
  assert.equal(sawSub, sub);
  assert.equal(message, finished);
  // Closed before it started: it never connects and never reports anything but closed.
  const closedStates = [];
  const early = subscribe("http://127.0.0.1:9", "st_a", { onState: (s) => closedStates.push(s) });
  early.close();
  await early.done;
  assert.deepEqual(closedStates, ["closed"]);
  assert.equal(early.connections, 0);
});
