export { connect, SidecarClient } from "./client.js";
export { ClientCodes, SidecarError } from "./errors.js";
export { SidecarStream } from "./stream.js";
export { fullJitterDelay } from "./backoff.js";
