import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { connect, fullJitterDelay } from "../src/index.js";
import { FakeWebSocket, settle } from "./fake-websocket.js";
import { advance, connected, restoreTimers, take } from "./helpers.js";

afterEach(restoreTimers);

const BODY = { model: "m", messages: [] };

test("full jitter: uniform below an exponential ceiling, capped", () => {
  const policy = { baseMs: 250, capMs: 8000 };
  const top = (attempt) => fullJitterDelay(attempt, policy, () => 0.999999);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 9].map(top), [249, 499, 999, 1999, 3999, 7999, 7999, 7999]);
  assert.equal(fullJitterDelay(3, policy, () => 0), 0);
  assert.equal(fullJitterDelay(2, policy, () => 0.5), 500);
  assert.equal(fullJitterDelay(1e6, policy, () => 0.5), 4000);
});

test("a cut mid-answer resumes after the last received seq: every delta once, in order", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 10);
  const seen = await take(stream, 4); // 5..10 received but not yet iterated
  ws.cut();
  assert.equal(client.state, "reconnecting");
  await advance(124); // random 0.5 × 250 ms
  assert.equal(FakeWebSocket.instances.length, 1);
  await advance(1);
  const again = FakeWebSocket.last();
  assert.equal(again.url.searchParams.get("resume_token"), "tok-s1");
  again.accept("s1");
  assert.deepEqual(again.frames("resume"), [{ type: "resume", id: stream.id, after_seq: 10 }]);
  again.deltas(stream.id, 9, 14); // a replay overlapping what we hold
  again.push({ type: "done", id: stream.id, finish_reason: "stop", usage: { prompt_tokens: 1, completion_tokens: 14 } });
  for await (const delta of stream) seen.push(delta);
  assert.deepEqual(seen.map((d) => d.seq), Array.from({ length: 14 }, (_, i) => i + 1));
  assert.equal((await stream.result).usage.completion_tokens, 14);
});

test("acks not yet sent before the cut go out after the resume", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 3);
  await take(stream, 3);
  ws.cut();
  await advance(200);
  const again = FakeWebSocket.last();
  again.accept("s1");
  assert.deepEqual(again.sent, [
    { type: "resume", id: stream.id, after_seq: 3 },
    { type: "ack", id: stream.id, seq: 3 },
  ]);
});

test("a reconnect into a new session fails the running answers with resume_expired", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 2);
  ws.cut();
  await advance(200);
  FakeWebSocket.last().accept("s2");
  await assert.rejects(stream.result, { code: "resume_expired", streamId: stream.id });
  assert.equal(client.state, "open");
  assert.deepEqual(FakeWebSocket.last().frames("resume"), []);
});

test("a resume the sidecar refuses fails the stream with the sidecar's code", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.cut();
  await advance(200);
  const again = FakeWebSocket.last();
  again.accept("s1");
  again.push({ type: "error", id: stream.id, code: "resume_too_late", message: "gone" });
  await assert.rejects(stream.result, { code: "resume_too_late" });
});

test("reconnect delays grow with full jitter; after maxAttempts the streams fail", async () => {
  const errors = [];
  const { client, ws } = await connected({
    random: () => 0.999,
    backoff: { baseMs: 100, capMs: 1000, maxAttempts: 4 },
    onError: (err) => errors.push(err.code),
  });
  const stream = client.generate(BODY);
  ws.cut();
  const waits = [];
  for (let attempt = 0; attempt < 4; attempt += 1) {
    const before = FakeWebSocket.instances.length;
    let waited = 0;
    while (FakeWebSocket.instances.length === before) {
      await advance(10);
      waited += 10;
    }
    waits.push(waited);
    FakeWebSocket.last().cut();
  }
  assert.deepEqual(waits, [100, 200, 400, 800]);
  await assert.rejects(stream.result, { code: "connection_lost" });
  assert.deepEqual(errors, ["connection_lost"]);
  assert.equal(client.state, "idle");
  await advance(5000);
  assert.equal(FakeWebSocket.instances.length, 5); // gave up: no more attempts
});

test("a successful hello resets the backoff", async () => {
  const { client, ws } = await connected({ random: () => 0.999 });
  client.generate(BODY);
  ws.cut();
  await advance(250);
  FakeWebSocket.last().cut();
  await advance(500);
  FakeWebSocket.last().accept("s1");
  assert.equal(client.attempt, 0);
});

test("with nothing running, a dropped connection is reopened by the next generate", async () => {
  const { client, ws } = await connected();
  ws.cut(1000, "idle");
  await advance(10_000);
  assert.equal(client.state, "idle");
  assert.equal(FakeWebSocket.instances.length, 1);
  const stream = client.generate(BODY);
  await settle();
  const again = FakeWebSocket.last();
  assert.equal(again.url.searchParams.get("resume_token"), null); // nothing to resume
  again.accept("s2");
  assert.deepEqual(again.frames("generate").map((f) => f.id), [stream.id]);
});

test("generate while reconnecting is sent once the new connection says hello", async () => {
  const { client, ws } = await connected();
  const first = client.generate(BODY);
  ws.cut();
  const second = client.generate(BODY);
  await advance(200);
  const again = FakeWebSocket.last();
  again.accept("s1");
  assert.deepEqual(again.sent.map((f) => [f.type, f.id]), [
    ["resume", first.id],
    ["generate", second.id],
  ]);
});

test("cancel while disconnected is delivered after the resume hello", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 2);
  await take(stream, 2);
  ws.cut();
  stream.cancel();
  assert.equal((await stream.result).finishReason, "cancelled");
  await advance(200);
  const again = FakeWebSocket.last();
  again.accept("s1");
  assert.deepEqual(again.sent, [
    { type: "ack", id: stream.id, seq: 2 },
    { type: "cancel", id: stream.id },
  ]);
});

test("a revoked key closes the client for good", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.push({ type: "error", id: stream.id, code: "revoked_api_key", message: "revoked" });
  ws.cut(1008, "key revoked");
  await advance(10_000);
  assert.equal(client.state, "closed");
  assert.equal(FakeWebSocket.instances.length, 1);
  await assert.rejects(stream.result, { code: "revoked_api_key" });
});

test("a quiet connection is pinged; no answer within the timeout means reconnect", async () => {
  const { client, ws } = await connected({ pingIntervalMs: 1000, pingTimeoutMs: 2000 });
  const stream = client.generate(BODY);
  await advance(1000);
  const [ping] = ws.frames("ping");
  assert.equal(typeof ping.t, "number");
  await advance(1500);
  assert.equal(client.state, "open");
  await advance(600);
  assert.equal(client.state, "reconnecting");
  assert.equal(ws.closedWith, 4000);
  await advance(200);
  FakeWebSocket.last().accept("s1");
  assert.deepEqual(FakeWebSocket.last().frames("resume"), [{ type: "resume", id: stream.id, after_seq: 0 }]);
});

test("any frame answers the ping; the ping interval defaults to the hello's heartbeat_s", async () => {
  const { ws } = await connected();
  await advance(19_000);
  assert.equal(ws.frames("ping").length, 0);
  await advance(1_500);
  assert.equal(ws.frames("ping").length, 1);
  ws.push({ type: "pong", t: 1 });
  await advance(15_000);
  assert.equal(ws.readyState, FakeWebSocket.OPEN);
});

test("a sidecar that never says hello counts as a failed attempt", async () => {
  FakeWebSocket.reset();
  const { mock } = await import("node:test");
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 0 });
  const opening = connect("ws://sidecar.test/v1/stream", {
    WebSocket: FakeWebSocket,
    random: () => 0,
    openTimeoutMs: 1000,
    backoff: { maxAttempts: 1 },
  });
  const refused = assert.rejects(opening, { code: "unreachable" });
  await settle();
  await advance(1000);
  await advance(0);
  await advance(1000);
  await refused;
  assert.equal(FakeWebSocket.instances.length, 2);
});
