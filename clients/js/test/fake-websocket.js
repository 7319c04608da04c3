// A WebSocket stand-in: the test plays the sidecar's side of each connection.

export class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  /** @type {FakeWebSocket[]} */
  static instances = [];

  constructor(url, protocols) {
    this.url = new URL(url);
    this.protocols = protocols;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }

  static reset() {
    FakeWebSocket.instances = [];
  }

  static last() {
    return FakeWebSocket.instances.at(-1);
  }

  send(data) {
    if (this.readyState !== FakeWebSocket.OPEN) throw new Error("InvalidStateError");
    this.sent.push(JSON.parse(data));
  }

  close(code) {
    if (this.readyState >= FakeWebSocket.CLOSING) return;
    this.readyState = FakeWebSocket.CLOSED;
    this.closedWith = code ?? 1005;
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: "" }));
  }

  // The sidecar's side ----------------------------------------------------------------------

  accept(session = "s1", extra = {}) {
    this.readyState = FakeWebSocket.OPEN;
    this.onopen?.({});
    this.push({ type: "hello", protocol: 1, session, resume_token: `tok-${session}`,
      heartbeat_s: 20, ...extra });
  }

  push(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }

  deltas(id, from, to) {
    for (let seq = from; seq <= to; seq += 1) this.push({ type: "delta", id, seq, text: `t${seq} ` });
  }

  cut(code = 1006, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose?.({ code, reason });
  }

  frames(type) {
    return this.sent.filter((frame) => frame.type === type);
  }
}

/** Let promise callbacks (the dial, iterator wake-ups) run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
