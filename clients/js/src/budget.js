/**
 * A token bucket for the messages the client sends. The sidecar drops messages beyond
 * `--max-messages-per-second` (50 by default, acks included) and closes the connection after a
 * burst of drops, so the client spends its own, smaller budget: acks wait for it (they are
 * cumulative, so a late ack loses nothing), control messages always go.
 */
export class MessageBudget {
  /**
   * @param {number} perSecond
   * @param {number} nowMs
   */
  constructor(perSecond, nowMs) {
    this.perSecond = perSecond;
    this.capacity = Math.max(1, perSecond);
    this.tokens = this.capacity;
    this.updatedMs = nowMs;
  }

  /** @param {number} nowMs */
  refill(nowMs) {
    const elapsed = Math.max(0, nowMs - this.updatedMs) / 1000;
    this.tokens = Math.min(this.capacity, this.tokens + elapsed * this.perSecond);
    this.updatedMs = nowMs;
  }

  /** Take one token if there is one (acks). @param {number} nowMs */
  tryTake(nowMs) {
    if (this.perSecond <= 0) return true;
    this.refill(nowMs);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Spend one token even if none is left (control messages must go). @param {number} nowMs */
  spend(nowMs) {
    if (this.perSecond <= 0) return;
    this.refill(nowMs);
    this.tokens = Math.max(0, this.tokens - 1);
  }
}
