import { mock } from "node:test";
import { connect } from "../src/index.js";
import { FakeWebSocket, settle } from "./fake-websocket.js";

/** Fake clock and sockets for one test; returns a connected client and its first socket. */
export async function connected(options = {}) {
  FakeWebSocket.reset();
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 1_000_000 });
  const opening = connect("ws://sidecar.test/v1/stream", {
    WebSocket: FakeWebSocket,
    random: () => 0.5,
    ...options,
  });
  await settle();
  const ws = FakeWebSocket.last();
  ws.accept();
  const client = await opening;
  return { client, ws };
}

export async function advance(ms) {
  mock.timers.tick(ms);
  await settle();
}

export function restoreTimers() {
  mock.timers.reset();
}

/** Read `count` deltas from an iterator. */
export async function take(stream, count) {
  const out = [];
  for (let i = 0; i < count; i += 1) {
    const { value, done } = await stream.next();
    if (done) break;
    out.push(value);
  }
  return out;
}
