import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { advance, connected, restoreTimers, take } from "./helpers.js";

afterEach(restoreTimers);

const BODY = { model: "m", messages: [] };

test("acks are batched: one cumulative ack per interval for what was iterated", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 30);
  await take(stream, 25);
  assert.deepEqual(ws.frames("ack"), []);
  await advance(100);
  assert.deepEqual(ws.frames("ack"), [{ type: "ack", id: stream.id, seq: 25 }]);
  await advance(1000); // nothing new rendered: nothing sent
  assert.equal(ws.frames("ack").length, 1);
});

test("a fast stream sends at most ten acks a second", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  for (let seq = 1; seq <= 200; seq += 1) {
    ws.deltas(stream.id, seq, seq);
    await take(stream, 1);
    await advance(5); // 200 deltas a second, each rendered at once
  }
  const acks = ws.frames("ack");
  assert.ok(acks.length >= 9 && acks.length <= 11, `${acks.length} acks in one second`);
  assert.deepEqual(acks.map((a) => a.seq), [...acks.map((a) => a.seq)].sort((x, y) => x - y));
});

test("many streams stay within the message budget; the acks left over go later", async () => {
  const { client, ws } = await connected({ maxMessagesPerSecond: 5 });
  const streams = Array.from({ length: 12 }, () => client.generate(BODY));
  const afterGenerates = ws.sent.length;
  for (const stream of streams) {
    ws.deltas(stream.id, 1, 1);
    await take(stream, 1);
  }
  await advance(100);
  // The 12 generates emptied the bucket (control messages always go); 100 ms refills half a token.
  assert.equal(ws.sent.length - afterGenerates, 0);
  for (let step = 0; step < 30; step += 1) await advance(100);
  const acked = new Set(ws.frames("ack").map((a) => a.id));
  assert.equal(acked.size, 12);
  assert.ok(ws.frames("ack").length <= 5 * 3.1 + 1);
});

test("with ack: manual only what the app says it rendered is acked", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY, { ack: "manual" });
  ws.deltas(stream.id, 1, 10);
  await take(stream, 10);
  await advance(200);
  assert.deepEqual(ws.frames("ack"), []);
  stream.rendered(7);
  stream.rendered(99); // beyond what arrived: capped
  await advance(100);
  assert.deepEqual(ws.frames("ack"), [{ type: "ack", id: stream.id, seq: 10 }]);
});

test("cancel acks what was rendered, then cancels; later frames are ignored", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 5);
  await take(stream, 3);
  stream.cancel();
  assert.deepEqual(ws.sent.slice(-2), [
    { type: "ack", id: stream.id, seq: 3 },
    { type: "cancel", id: stream.id },
  ]);
  assert.deepEqual(await stream.result, { finishReason: "cancelled", usage: null });
  assert.deepEqual(await stream.next(), { value: undefined, done: true });
  ws.deltas(stream.id, 6, 8);
  ws.push({ type: "done", id: stream.id, finish_reason: "cancelled", usage: null });
  ws.push({ type: "error", id: stream.id, code: "unknown_id", message: "gone" });
  assert.deepEqual(await stream.next(), { value: undefined, done: true });
  stream.cancel(); // twice is harmless
  assert.equal(ws.frames("cancel").length, 1);
});

test("leaving a for-await loop early cancels the answer", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 5);
  for await (const delta of stream) {
    if (delta.seq === 2) break;
  }
  assert.deepEqual(ws.frames("cancel"), [{ type: "cancel", id: stream.id }]);
  assert.equal((await stream.result).finishReason, "cancelled");
});

test("close sends the acks still pending", async () => {
  const { client, ws } = await connected();
  const stream = client.generate(BODY);
  ws.deltas(stream.id, 1, 4);
  await take(stream, 4);
  client.close();
  assert.deepEqual(ws.frames("ack"), [{ type: "ack", id: stream.id, seq: 4 }]);
});
