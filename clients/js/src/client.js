/**
 * A connection to the sidecar's `/v1/stream` (protocol v1) that survives network cuts.
 *
 * One WebSocket at a time. When it drops while answers are running, the client reconnects with
 * exponential backoff and full jitter, presents the session's resume token, and sends one
 * `resume` per running stream with the last seq it received, so every delta reaches the
 * application exactly once and in order (replays of a seq already received are dropped). With
 * nothing running it reconnects only when the next `generate` needs it.
 *
 * Acks are batched: one per stream per `ackIntervalMs` at most, cumulative, for what the
 * application rendered, and only while a message budget well under the sidecar's rate limit
 * allows. Control messages (generate, cancel, resume, pong) always go.
 */
import { fullJitterDelay } from "./backoff.js";
import { MessageBudget } from "./budget.js";
import { ClientCodes, SidecarError } from "./errors.js";
import { SidecarStream } from "./stream.js";

const OPEN = 1;
const ABANDONED = 4000; // an application close code (4000-4999): we gave up on this socket
const DEFAULTS = Object.freeze({
  backoff: Object.freeze({ baseMs: 250, capMs: 8000, maxAttempts: 8 }),
  ackIntervalMs: 100,
  maxMessagesPerSecond: 20, // the sidecar's default limit is 50
  pingTimeoutMs: 10000,
  openTimeoutMs: 10000,
});

/**
 * Open a client and wait for the sidecar's `hello`.
 * @param {string} url e.g. "wss://chat.example/v1/stream"
 * @param {import("../types/index.js").ConnectOptions} [options]
 * @returns {Promise<SidecarClient>}
 */
export function connect(url, options = {}) {
  const client = new SidecarClient(url, options);
  return client.ready.then(() => client);
}

export class SidecarClient {
  /**
   * @param {string} url
   * @param {import("../types/index.js").ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = options;
    this.backoff = { ...DEFAULTS.backoff, ...options.backoff };
    this.ackIntervalMs = options.ackIntervalMs ?? DEFAULTS.ackIntervalMs;
    this.pingTimeoutMs = options.pingTimeoutMs ?? DEFAULTS.pingTimeoutMs;
    this.openTimeoutMs = options.openTimeoutMs ?? DEFAULTS.openTimeoutMs;
    this.random = options.random ?? Math.random;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.budget = new MessageBudget(
      options.maxMessagesPerSecond ?? DEFAULTS.maxMessagesPerSecond,
      Date.now(),
    );
    /** @type {"connecting" | "open" | "reconnecting" | "idle" | "closed"} */
    this.state = "connecting";
    /** @type {string | null} */
    this.session = null;
    /** @type {string | null} */
    this.resumeToken = null;
    this.heartbeatMs = 0;
    this.attempt = 0;
    this.generation = 0; // events from a socket of an older generation are ignored
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {Map<string, SidecarStream>} running streams, in the order they were started */
    this.streams = new Map();
    /** @type {Map<string, number>} streams cancelled while disconnected: id → rendered seq */
    this.pendingCancels = new Map();
    /** @type {Set<SidecarStream>} */
    this.ackDirty = new Set();
    this.nextId = 0;
    this.lastRxMs = 0;
    /** @type {number | null} */
    this.pingSentMs = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.ackTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.reconnectTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.openTimer = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.livenessTimer = null;
    this.readyPending = true;
    /** @type {(value: void) => void} */
    let resolve = () => {};
    /** @type {(error: unknown) => void} */
    let reject = () => {};
    /** @type {Promise<void>} */
    this.ready = new Promise((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    this.ready.catch(() => {});
    this.resolveReady = resolve;
    this.rejectReady = reject;
    if (!this.WebSocket) {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket");
    }
    this.dial();
  }

  // Public API ------------------------------------------------------------------------------

  /**
   * Start an answer. Iterate the returned stream for its deltas; `await stream.result` for the
   * finish reason and usage.
   * @param {object} body an OpenAI chat-completions request (or completions, with `path`)
   * @param {{path?: string, ack?: "iteration" | "manual"}} [options]
   * @returns {SidecarStream}
   */
  generate(body, options = {}) {
    if (this.state === "closed") {
      throw new SidecarError(ClientCodes.CLOSED, "this client was closed; connect again");
    }
    this.nextId += 1;
    const stream = new SidecarStream(
      `r${this.nextId}`,
      body,
      options.path,
      options.ack ?? "iteration",
      this,
    );
    this.streams.set(stream.id, stream);
    if (this.state === "open") this.sendGenerate(stream);
    else if (this.state === "idle") this.dial();
    return stream;
  }

  /** Close for good: pending acks go out, running streams fail with code `closed`. */
  close() {
    if (this.state === "closed") return;
    this.flushAcks(true);
    this.shutdown(new SidecarError(ClientCodes.CLOSED, "the client was closed"), 1000);
  }

  // Stream callbacks ------------------------------------------------------------------------

  /** @param {SidecarStream} stream */
  onRendered(stream) {
    this.ackDirty.add(stream);
    if (this.ackTimer === null) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = null;
        this.flushAcks(false);
      }, this.ackIntervalMs);
    }
  }

  /** @param {SidecarStream} stream */
  onCancel(stream) {
    this.streams.delete(stream.id);
    this.ackDirty.delete(stream);
    if (stream.state !== "sent") return; // never reached the sidecar
    if (this.state === "open") {
      this.sendCancel(stream.id, stream.renderedSeq, stream.ackedSeq);
    } else {
      this.pendingCancels.set(stream.id, stream.renderedSeq);
    }
  }

  // Connection ------------------------------------------------------------------------------

  dial() {
    if (this.state === "idle") this.setState("connecting");
    const generation = ++this.generation;
    const resuming = this.resumeToken !== null && this.hasSentStreams();
    const token = this.options.token;
    Promise.resolve(typeof token === "function" ? token() : token).then(
      (credential) => {
        if (generation === this.generation) this.open(generation, credential, resuming);
      },
      () => {
        if (generation === this.generation) this.lost(0, "token provider failed");
      },
    );
  }

  /**
   * @param {number} generation
   * @param {string | undefined} credential
   * @param {boolean} resuming
   */
  open(generation, credential, resuming) {
    const url = new URL(this.url);
    if (this.options.tenant) url.searchParams.set("tenant", this.options.tenant);
    if (resuming && this.resumeToken) url.searchParams.set("resume_token", this.resumeToken);
    let ws;
    try {
      ws = credential
        ? new this.WebSocket(url.toString(), ["sidecar.v1", `bearer.${credential}`])
        : new this.WebSocket(url.toString());
    } catch (error) {
      this.lost(0, String(error));
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => {
      if (generation === this.generation) this.onFrame(event.data);
    };
    ws.onclose = (event) => {
      if (generation === this.generation) this.lost(event.code, event.reason);
    };
    ws.onerror = () => {}; // a close event always follows
    this.openTimer = setTimeout(() => {
      if (generation === this.generation) this.lost(0, "no hello from the sidecar in time");
    }, this.openTimeoutMs);
  }

  /**
   * The connection is gone (or never came up): reconnect if anything needs it.
   * @param {number} code
   * @param {string} reason
   */
  lost(code, reason) {
    this.dropSocket();
    if (this.state === "closed") return;
    if (code === 1008 && /revoked/i.test(reason)) {
      this.shutdown(new SidecarError("revoked_api_key", "this client's API key was revoked"));
      return;
    }
    if (!this.readyPending && this.streams.size === 0 && this.pendingCancels.size === 0) {
      this.setState("idle");
      return;
    }
    if (this.attempt >= this.backoff.maxAttempts) {
      this.giveUp(reason);
      return;
    }
    const delay = fullJitterDelay(this.attempt, this.backoff, this.random);
    this.attempt += 1;
    this.setState("reconnecting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.dial();
    }, delay);
  }

  /** @param {string} reason */
  giveUp(reason) {
    const first = this.readyPending;
    const code = first ? ClientCodes.UNREACHABLE : ClientCodes.CONNECTION_LOST;
    const tries = this.backoff.maxAttempts + 1;
    const error = new SidecarError(
      code,
      `cannot reach the sidecar at ${this.url} after ${tries} attempts${reason ? ` (${reason})` : ""}`,
    );
    this.failAll(error);
    this.pendingCancels.clear();
    this.attempt = 0;
    if (first) {
      this.readyPending = false;
      this.rejectReady(error);
      this.setState("closed");
    } else {
      this.setState("idle");
    }
    this.options.onError?.(error);
  }

  /**
   * @param {SidecarError} error
   * @param {number} [closeCode]
   */
  shutdown(error, closeCode) {
    this.setState("closed");
    this.failAll(error);
    if (this.readyPending) {
      this.readyPending = false;
      this.rejectReady(error);
    }
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    this.reconnectTimer = this.ackTimer = null;
    this.dropSocket(closeCode);
  }

  /** @param {number} [closeCode] */
  dropSocket(closeCode = ABANDONED) {
    this.generation += 1;
    if (this.openTimer !== null) clearTimeout(this.openTimer);
    if (this.livenessTimer !== null) clearInterval(this.livenessTimer);
    this.openTimer = this.livenessTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= OPEN) {
      try {
        ws.close(closeCode);
      } catch {
        // already closing
      }
    }
  }

  /** @param {SidecarError} error */
  failAll(error) {
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.ackDirty.clear();
    for (const stream of streams) {
      stream.fail(new SidecarError(error.code, error.message, stream.id));
    }
  }

  /** @param {"connecting" | "open" | "reconnecting" | "idle" | "closed"} state */
  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.options.onStateChange?.(state);
  }

  hasSentStreams() {
    if (this.pendingCancels.size) return true;
    for (const stream of this.streams.values()) if (stream.state === "sent") return true;
    return false;
  }

  // Frames in -------------------------------------------------------------------------------

  /** @param {unknown} data */
  onFrame(data) {
    this.lastRxMs = Date.now();
    this.pingSentMs = null;
    let frame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      this.options.onError?.(
        new SidecarError(ClientCodes.PROTOCOL_ERROR, "the sidecar sent a frame that is not JSON"),
      );
      return;
    }
    const stream = typeof frame.id === "string" ? this.streams.get(frame.id) : undefined;
    switch (frame.type) {
      case "hello":
        this.onHello(frame);
        return;
      case "delta":
        if (stream) this.onDelta(stream, frame.seq, frame.text);
        return;
      case "start":
        if (stream) stream.traceId = frame.trace_id ?? null;
        return;
      case "done":
        if (stream) {
          this.forget(stream);
          stream.finish({ finishReason: frame.finish_reason ?? null, usage: frame.usage ?? null });
        }
        return;
      case "error":
        this.onError(stream, frame);
        return;
      case "ping":
        this.send({ type: "pong", t: frame.t });
        return;
      default:
        return; // pong, and frame types of later protocol versions
    }
  }

  /** @param {{session: string, resume_token: string, heartbeat_s?: number}} hello */
  onHello(hello) {
    if (this.openTimer !== null) clearTimeout(this.openTimer);
    this.openTimer = null;
    const resumed = this.session !== null && hello.session === this.session;
    this.session = hello.session;
    this.resumeToken = hello.resume_token;
    this.heartbeatMs = (hello.heartbeat_s ?? 0) * 1000;
    this.attempt = 0;
    this.setState("open");
    for (const [id, rendered] of this.pendingCancels) {
      if (resumed) this.sendCancel(id, rendered, 0);
    }
    this.pendingCancels.clear();
    for (const stream of [...this.streams.values()]) {
      if (stream.state === "queued") {
        this.sendGenerate(stream);
      } else if (resumed) {
        this.send({ type: "resume", id: stream.id, after_seq: stream.receivedSeq });
      } else {
        this.forget(stream);
        stream.fail(
          new SidecarError(
            ClientCodes.RESUME_EXPIRED,
            "reconnected, but the sidecar no longer holds this answer (no resume grace, or it expired)",
            stream.id,
          ),
        );
      }
    }
    this.startLiveness();
    if (this.ackDirty.size) this.flushAcks(false);
    if (this.readyPending) {
      this.readyPending = false;
      this.resolveReady();
    }
  }

  /**
   * @param {SidecarStream} stream
   * @param {number} seq
   * @param {string} text
   */
  onDelta(stream, seq, text) {
    const gap = stream.pushDelta(seq, text);
    if (gap) {
      this.forget(stream);
      this.send({ type: "cancel", id: stream.id });
      stream.fail(gap);
    }
  }

  /**
   * @param {SidecarStream | undefined} stream
   * @param {{code?: string, message?: string, id?: string}} frame
   */
  onError(stream, frame) {
    const error = new SidecarError(
      frame.code ?? "unknown",
      frame.message ?? "the sidecar reported an error",
      frame.id,
    );
    if (stream) {
      this.forget(stream);
      stream.fail(error);
    } else if (frame.id === undefined) {
      this.options.onError?.(error); // about the connection: rate_limited, resume_expired, ...
    }
  }

  /** @param {SidecarStream} stream */
  forget(stream) {
    this.streams.delete(stream.id);
    this.ackDirty.delete(stream);
  }

  // Frames out ------------------------------------------------------------------------------

  /**
   * A control message: always sent while the socket is open, and counted in the budget.
   * @param {object} frame
   */
  send(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    this.budget.spend(Date.now());
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      return false; // the close event follows
    }
    return true;
  }

  /** @param {SidecarStream} stream */
  sendGenerate(stream) {
    /** @type {Record<string, unknown>} */
    const frame = { type: "generate", id: stream.id, body: stream.body };
    if (stream.path) frame.path = stream.path;
    if (this.send(frame)) stream.state = "sent";
  }

  /**
   * The last rendered seq first: for an answer cut short, acks decide what was delivered.
   * @param {string} id
   * @param {number} rendered
   * @param {number} acked
   */
  sendCancel(id, rendered, acked) {
    if (rendered > acked) this.send({ type: "ack", id, seq: rendered });
    this.send({ type: "cancel", id });
  }

  /** @param {boolean} force send even beyond the budget (closing) */
  flushAcks(force) {
    if (this.state !== "open") return;
    const now = Date.now();
    for (const stream of [...this.ackDirty]) {
      if (stream.ended || stream.renderedSeq <= stream.ackedSeq) {
        this.ackDirty.delete(stream);
        continue;
      }
      if (!force && !this.budget.tryTake(now)) break;
      const ack = { type: "ack", id: stream.id, seq: stream.renderedSeq };
      if (!this.sendCounted(ack, force)) break;
      stream.ackedSeq = stream.renderedSeq;
      this.ackDirty.delete(stream);
    }
    if (this.ackDirty.size && this.ackTimer === null) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = null;
        this.flushAcks(false);
      }, this.ackIntervalMs);
    }
  }

  /**
   * @param {object} frame
   * @param {boolean} force
   */
  sendCounted(frame, force) {
    if (force) return this.send(frame);
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame)); // its token was taken by tryTake
    } catch {
      return false;
    }
    return true;
  }

  // Liveness --------------------------------------------------------------------------------

  /**
   * Browsers answer the sidecar's protocol pings but never tell the page when the sidecar
   * stops answering; an application ping after a quiet interval does.
   */
  startLiveness() {
    const interval = this.options.pingIntervalMs ?? (this.heartbeatMs || 15000);
    const timeout = this.pingTimeoutMs;
    this.lastRxMs = Date.now();
    this.pingSentMs = null;
    if (this.livenessTimer !== null) clearInterval(this.livenessTimer);
    const timer = setInterval(
      () => {
        if (this.livenessTimer !== timer) return; // stopped from within an earlier tick
        const now = Date.now();
        if (this.pingSentMs !== null) {
          if (now - this.pingSentMs >= timeout) this.lost(0, "the sidecar stopped answering");
        } else if (now - this.lastRxMs >= interval && this.send({ type: "ping", t: now })) {
          this.pingSentMs = now;
        }
      },
      Math.max(100, Math.min(interval, timeout) / 4),
    );
    this.livenessTimer = timer;
  }
}
