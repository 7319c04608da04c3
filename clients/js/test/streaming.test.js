import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { connect, SidecarError } from "../src/index.js";
import { FakeWebSocket } from "./fake-websocket.js";
import { advance, connected, restoreTimers, take } from "./helpers.js";

afterEach(restoreTimers);

const BODY = { model: "m", messages: [{ role: "user", content: "hi" }] };

test("connect offers the token as a subprotocol and names the tenant", async () => {
  const { client, ws } = await connected({ token: "sk_x", tenant: "acme" });
  assert.deepEqual(ws.protocols, ["sidecar.v1", "bearer.sk_x"]);
  assert.equal(ws.url.searchParams.get("tenant"), "acme");
  assert.equal(ws.url.searchParams.get("resume_token"), null);
  assert.equal(client.session, "s1");
  assert.equal(client.state, "open");
});

test("without a token no subprotocol is offered", async () => {
  const { ws } = await connected();
  assert.equal(ws.protocols, undefined);
});

test("a token function is called for every connection", async () => {
  let calls = 0;
  const { client, ws } = await connected({ token: async () => `jwt${++calls}` });
  client.generate(BODY);
  ws.cut();
  await advance(200);
  assert.deepEqual(FakeWebSocket.last().protocols, ["sidecar.v1", "bearer.jwt2"]);
});

test("deltas come out in order, then the usage", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY, { path: "/v1/completions" });
  assert.deepEqual(ws.frames("generate"), [
    { type: "generate", id: stream.id, body: BODY, path: "/v1/completions" },
  ]);
  ws.push({ type: "start", id: stream.id, trace_id: "abc" });
  ws.deltas(stream.id, 1, 3);
  const usage = { prompt_tokens: 2, completion_tokens: 3 };
  ws.push({ type: "done", id: stream.id, finish_reason: "stop", usage });
  const seen = [];
  for await (const delta of stream) seen.push(delta);
  assert.deepEqual(seen.map((d) => [d.seq, d.text]), [[1, "t1 "], [2, "t2 "], [3, "t3 "]]);
  assert.deepEqual(await stream.result, { finishReason: "stop", usage });
  assert.equal(stream.traceId, "abc");
});

test("several streams share the connection with distinct ids", async () => {
  const { client, ws } = await connected();
  const a = client.generate(BODY);
  const b = client.generate(BODY);
  assert.notEqual(a.id, b.id);
  ws.deltas(b.id, 1, 2);
  ws.deltas(a.id, 1, 1);
  assert.deepEqual((await take(b, 2)).map((d) => d.seq), [1, 2]);
  assert.deepEqual((await take(a, 1)).map((d) => d.seq), [1]);
});

test("a replayed seq is dropped: each delta is handed out once", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 3);
  ws.deltas(stream.id, 2, 4); // 2 and 3 again
  ws.push({ type: "done", id: stream.id, finish_reason: "stop", usage: null });
  const seqs = [];
  for await (const delta of stream) seqs.push(delta.seq);
  assert.deepEqual(seqs, [1, 2, 3, 4]);
});

test("a gap fails the stream with sequence_gap and stops it at the sidecar", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 1);
  ws.push({ type: "delta", id: stream.id, seq: 3, text: "x" });
  await assert.rejects(stream.result, (err) => err instanceof SidecarError && err.code === "sequence_gap");
  assert.deepEqual(ws.frames("cancel"), [{ type: "cancel", id: stream.id }]);
});

test("an error frame ends the stream with its code, after the deltas before it", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 2);
  ws.push({ type: "error", id: stream.id, code: "upstream_timeout", message: "slow" });
  const seqs = [];
  await assert.rejects(
    (async () => {
      for await (const delta of stream) seqs.push(delta.seq);
    })(),
    (err) => err instanceof SidecarError && err.code === "upstream_timeout" && err.streamId === stream.id,
  );
  assert.deepEqual(seqs, [1, 2]); // what arrived before the error is still shown
  await assert.rejects(stream.result, { code: "upstream_timeout" });
});

test("connection-level errors go to onError and leave streams running", async () => {
  const errors = [];
  const { client, ws } = await connected({ onError: (err) => errors.push(err.code) });
  const stream = client.generate(BODY);
  ws.push({ type: "error", code: "rate_limited", message: "slow down" });
  ws.push("not json");
  ws.deltas(stream.id, 1, 1);
  assert.deepEqual(errors, ["rate_limited", "protocol_error"]);
  assert.deepEqual((await take(stream, 1)).map((d) => d.seq), [1]);
});

test("the sidecar's application pings are answered", async () => {
  const { ws } = await connected();
  ws.push({ type: "ping", t: 42 });
  assert.deepEqual(ws.frames("pong"), [{ type: "pong", t: 42 }]);
});

test("frames of unknown types and ids are ignored", async () => {
  const { client, ws } = await connected();
  ws.push({ type: "future_frame", id: "r9" });
  ws.push({ type: "delta", id: "nobody", seq: 1, text: "x" });
  assert.equal(client.state, "open");
});

test("generate after close throws a SidecarError", async () => {
  const { client } = await connected();
  client.close();
  assert.throws(() => client.generate(BODY), { code: "closed" });
});

test("close fails running streams with code closed and closes 1000", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  client.close();
  await assert.rejects(stream.result, { code: "closed" });
  assert.equal(ws.closedWith, 1000);
});

test("connect without any WebSocket implementation says how to fix it", () => {
  const global = globalThis.WebSocket;
  globalThis.WebSocket = undefined;
  try {
    assert.throws(() => connect("ws://x/v1/stream"), /options.WebSocket/);
  } finally {
    globalThis.WebSocket = global;
  }
});

test("the type declarations cover every export", async () => {
  const { readFile } = await import("node:fs/promises");
  const dts = await readFile(new URL("../types/index.d.ts", import.meta.url), "utf8");
  const exported = Object.keys(await import("../src/index.js"));
  for (const name of exported) {
    assert.match(dts, new RegExp(`export declare (const|class|function) ${name}\\b`), name);
  }
});
