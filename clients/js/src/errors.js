/**
 * The one error type of the library. `code` is machine-readable: either a code the sidecar sent
 * in an `error` frame (`upstream_unavailable`, `rate_limited`, `resume_too_late`, ...) or one of
 * the client's own codes below. `streamId` is set when the error concerns one stream.
 */

/** Codes raised by the client itself (the sidecar's own codes pass through unchanged). */
export const ClientCodes = Object.freeze({
  /** Every reconnect attempt failed; the streams that were running are lost. */
  CONNECTION_LOST: "connection_lost",
  /** The first connection could not be opened. */
  UNREACHABLE: "unreachable",
  /** Reconnected, but the sidecar no longer holds the session (no resume grace, or it expired). */
  RESUME_EXPIRED: "resume_expired",
  /** The application closed the client while the stream ran. */
  CLOSED: "closed",
  /** A delta skipped a seq: the stream can no longer be shown exactly once and in order. */
  SEQUENCE_GAP: "sequence_gap",
  /** The sidecar sent a frame that is not protocol v1 JSON. */
  PROTOCOL_ERROR: "protocol_error",
});

export class SidecarError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string | undefined} [streamId]
   */
  constructor(code, message, streamId) {
    super(message);
    this.name = "SidecarError";
    this.code = code;
    this.streamId = streamId;
  }
}
