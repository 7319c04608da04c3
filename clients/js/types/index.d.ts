// Type declarations for the sidecar protocol-v1 client (src/index.js).

export type ClientState = "connecting" | "open" | "reconnecting" | "idle" | "closed";

export interface BackoffPolicy {
  /** First reconnect waits up to this long (default 250). */
  baseMs?: number;
  /** No reconnect waits longer than this (default 8000). */
  capMs?: number;
  /** Reconnect attempts before giving up with `connection_lost` (default 8). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** API key or JWT, sent as the subprotocol `bearer.<token>` (with `sidecar.v1`). A function
   * is called before every (re)connect, so an expiring token can be refreshed. */
  token?: string | (() => string | Promise<string>);
  /** Tenant, as `?tenant=` (ignored by the sidecar once authentication is configured). */
  tenant?: string;
  backoff?: BackoffPolicy;
  /** At most one ack per stream per this many ms (default 100). */
  ackIntervalMs?: number;
  /** The client's own message budget, under the sidecar's `--max-messages-per-second`
   * (default 20; 0 = unlimited). Acks wait for it; control messages always go. */
  maxMessagesPerSecond?: number;
  /** Send an application ping after this long without any frame (default: the `heartbeat_s`
   * of the sidecar's hello, else 15000). */
  pingIntervalMs?: number;
  /** Give up on the connection when a ping gets no frame back within this (default 10000). */
  pingTimeoutMs?: number;
  /** Wait this long for the `hello` after opening (default 10000). */
  openTimeoutMs?: number;
  /** A WebSocket implementation (default: globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
  /** Random numbers in [0, 1) for the backoff jitter (default Math.random). */
  random?: () => number;
  onStateChange?: (state: ClientState) => void;
  /** Errors about the connection rather than one stream (rate_limited, connection_lost, ...). */
  onError?: (error: SidecarError) => void;
}

export interface GenerateOptions {
  /** "/v1/chat/completions" (default) or "/v1/completions". */
  path?: string;
  /** "iteration" (default): a delta counts as rendered when the iterator hands it out.
   * "manual": call `stream.rendered(seq)` once it is on screen. */
  ack?: "iteration" | "manual";
}

export interface Delta {
  seq: number;
  text: string;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface StreamResult {
  /** "stop", "length", ... or "cancelled" after `cancel()`. */
  finishReason: string | null;
  /** null after `cancel()`. */
  usage: Usage | null;
}

export declare const ClientCodes: Readonly<{
  CONNECTION_LOST: "connection_lost";
  UNREACHABLE: "unreachable";
  RESUME_EXPIRED: "resume_expired";
  CLOSED: "closed";
  SEQUENCE_GAP: "sequence_gap";
  PROTOCOL_ERROR: "protocol_error";
}>;

export declare class SidecarError extends Error {
  constructor(code: string, message: string, streamId?: string);
  /** The sidecar's `error` frame code, or one of ClientCodes. */
  readonly code: string;
  readonly streamId: string | undefined;
}

export declare class SidecarStream implements AsyncIterableIterator<Delta> {
  readonly id: string;
  readonly traceId: string | null;
  readonly state: "queued" | "sent" | "ended";
  readonly ended: boolean;
  readonly receivedSeq: number;
  readonly renderedSeq: number;
  readonly ackedSeq: number;
  /** Resolves at the end of the answer; rejects with a SidecarError. */
  readonly result: Promise<StreamResult>;
  /** Every delta up to `seq` is on screen (with `{ack: "manual"}`). */
  rendered(seq: number): void;
  /** Stop the answer: iteration ends, `result` resolves with finishReason "cancelled". */
  cancel(): void;
  next(): Promise<IteratorResult<Delta, undefined>>;
  /** Leaving a `for await` loop early cancels the answer. */
  return(): Promise<IteratorResult<Delta, undefined>>;
  [Symbol.asyncIterator](): SidecarStream;
}

export declare class SidecarClient {
  constructor(url: string, options?: ConnectOptions);
  readonly state: ClientState;
  /** The sidecar's session id (from `hello`). */
  readonly session: string | null;
  /** Resolves on the first `hello`; rejects with code `unreachable`. */
  readonly ready: Promise<void>;
  generate(body: object, options?: GenerateOptions): SidecarStream;
  close(): void;
}

/** Open a client and wait for the sidecar's `hello`. */
export declare function connect(url: string, options?: ConnectOptions): Promise<SidecarClient>;

/** Milliseconds before reconnect attempt `attempt` (0-based): uniform in [0, min(cap, base·2^attempt)). */
export declare function fullJitterDelay(
  attempt: number,
  policy: { baseMs: number; capMs: number },
  random: () => number,
): number;
