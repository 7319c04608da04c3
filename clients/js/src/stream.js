/**
 * One answer being generated: an async iterator of deltas, each handed out once and in seq
 * order, and a `result` promise for the end (finish reason and usage).
 *
 * The stream keeps three positions: `receivedSeq` (highest seq taken off the wire; what a resume
 * continues after), `renderedSeq` (highest seq the application has shown; what acks report) and
 * `ackedSeq` (what was last sent in an ack).
 */
import { ClientCodes, SidecarError } from "./errors.js";

/** @typedef {{seq: number, text: string}} Delta */
/** @typedef {{finishReason: string | null, usage: {prompt_tokens: number, completion_tokens: number} | null}} StreamResult */

export class SidecarStream {
  /**
   * @param {string} id
   * @param {object} body
   * @param {string | undefined} path
   * @param {"iteration" | "manual"} ackMode
   * @param {{ onRendered(stream: SidecarStream): void, onCancel(stream: SidecarStream): void }} owner
   */
  constructor(id, body, path, ackMode, owner) {
    this.id = id;
    this.body = body;
    this.path = path;
    this.ackMode = ackMode;
    this.owner = owner;
    /** @type {"queued" | "sent" | "ended"} */
    this.state = "queued";
    /** @type {string | null} */
    this.traceId = null;
    this.receivedSeq = 0;
    this.renderedSeq = 0;
    this.ackedSeq = 0;
    /** @type {Delta[]} */
    this.buffer = [];
    /** @type {((value: IteratorResult<Delta>) => void) | null} */
    this.wake = null;
    /** @type {((error: unknown) => void) | null} */
    this.wakeError = null;
    /** @type {SidecarError | null} */
    this.error = null;
    /** @type {(value: StreamResult) => void} */
    let resolve = () => {};
    /** @type {(error: unknown) => void} */
    let reject = () => {};
    /** @type {Promise<StreamResult>} */
    this.result = new Promise((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    this.result.catch(() => {}); // an app that only iterates sees the error there
    this.resolveResult = resolve;
    this.rejectResult = reject;
  }

  get ended() {
    return this.state === "ended";
  }

  // Called by the client ------------------------------------------------------------------

  /**
   * A delta frame. Returns an error for a gap; a seq already received is dropped (a replay).
   * @param {number} seq
   * @param {string} text
   * @returns {SidecarError | null}
   */
  pushDelta(seq, text) {
    if (this.ended || seq <= this.receivedSeq) return null;
    if (seq !== this.receivedSeq + 1) {
      return new SidecarError(
        ClientCodes.SEQUENCE_GAP,
        `stream ${this.id}: got seq ${seq} after ${this.receivedSeq}`,
        this.id,
      );
    }
    this.receivedSeq = seq;
    const delta = { seq, text };
    if (this.wake) {
      const wake = this.wake;
      this.wake = this.wakeError = null;
      this.handOut(delta);
      wake({ value: delta, done: false });
    } else {
      this.buffer.push(delta);
    }
    return null;
  }

  /** @param {StreamResult} result */
  finish(result) {
    if (this.ended) return;
    this.state = "ended";
    this.resolveResult(result);
    this.wakeWaiter();
  }

  /** @param {SidecarError} error */
  fail(error) {
    if (this.ended) return;
    this.state = "ended";
    this.error = error; // thrown by the iterator after the deltas received before it
    this.rejectResult(error);
    this.wakeWaiter();
  }

  wakeWaiter() {
    if (!this.wake || this.buffer.length) return;
    const wake = this.wake;
    const wakeError = this.wakeError;
    this.wake = this.wakeError = null;
    if (this.error && wakeError) wakeError(this.error);
    else wake({ value: undefined, done: true });
  }

  /** @param {Delta} delta */
  handOut(delta) {
    if (this.ackMode === "iteration") this.markRendered(delta.seq);
  }

  /** @param {number} seq */
  markRendered(seq) {
    const upTo = Math.min(seq, this.receivedSeq);
    if (upTo <= this.renderedSeq) return;
    this.renderedSeq = upTo;
    this.owner.onRendered(this);
  }

  // Public API ----------------------------------------------------------------------------

  /**
   * The application has shown every delta up to `seq` (with `{ack: "manual"}`); the client
   * acknowledges it to the sidecar in its next batch.
   * @param {number} seq
   */
  rendered(seq) {
    this.markRendered(seq);
  }

  /**
   * Stop this answer: the sidecar aborts the model server's generation. Local and final:
   * iteration ends at once and `result` resolves with `finishReason: "cancelled"`.
   */
  cancel() {
    if (this.ended) return;
    this.owner.onCancel(this);
    this.buffer.length = 0;
    this.finish({ finishReason: "cancelled", usage: null });
  }

  /** @returns {Promise<IteratorResult<Delta>>} */
  next() {
    const delta = this.buffer.shift();
    if (delta) {
      this.handOut(delta);
      return Promise.resolve({ value: delta, done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.wake = resolve;
      this.wakeError = reject;
    });
  }

  /** Leaving a `for await` loop early cancels the answer. */
  return() {
    this.cancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}
