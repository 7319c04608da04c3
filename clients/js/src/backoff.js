/**
 * Reconnect delays: exponential backoff with "full jitter" (a uniformly random delay between 0
 * and the exponential cap), so that clients cut at the same moment do not all come back at once.
 */

/**
 * @param {number} attempt 0 for the first retry
 * @param {{baseMs: number, capMs: number}} policy
 * @param {() => number} random a number in [0, 1)
 * @returns {number} milliseconds to wait
 */
export function fullJitterDelay(attempt, policy, random) {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
