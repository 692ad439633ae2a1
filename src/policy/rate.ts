// Token buckets for new-flow rate limits: `rate` tokens per second up to `burst`, one token per
// new flow. State is two numbers per bucket kept by the caller in typed arrays (one slot per
// inside host in the host table, one for the whole gateway), so checking costs no allocation.
// A stamp below 0 marks a bucket never used: it starts full.

/** Refills bucket i to `nowMs`; returns its tokens. */
export function refill(
  tokens: Float64Array,
  stamps: Float64Array,
  i: number,
  nowMs: number,
  rate: number,
  burst: number,
): number {
  const last = stamps[i];
  let t: number;
  if (last < 0) t = burst;
  else {
    // A clock that goes back (it should not) refills nothing rather than draining the bucket.
    const elapsed = nowMs > last ? nowMs - last : 0;
    t = tokens[i] + (elapsed * rate) / 1000;
    if (t > burst) t = burst;
  }
  tokens[i] = t;
  stamps[i] = nowMs;
  return t;
}

/** Whether bucket i has a token for a new flow at `nowMs` (refills, takes nothing). */
export function hasToken(
  tokens: Float64Array,
  stamps: Float64Array,
  i: number,
  nowMs: number,
  rate: number,
  burst: number,
): boolean {
  return refill(tokens, stamps, i, nowMs, rate, burst) >= 1;
}

/** Takes one token from bucket i if there is one; false when the flow is over the limit. */
export function takeToken(
  tokens: Float64Array,
  stamps: Float64Array,
  i: number,
  nowMs: number,
  rate: number,
  burst: number,
): boolean {
  if (refill(tokens, stamps, i, nowMs, rate, burst) < 1) return false;
  tokens[i] -= 1;
  return true;
}

/** A single bucket (the gateway-wide limit). */
export class TokenBucket {
  private readonly tokens = new Float64Array(1);
  private readonly stamps = new Float64Array([-1]);
  constructor(
    readonly rate: number,
    readonly burst: number,
  ) {}

  take(nowMs: number): boolean {
    return takeToken(this.tokens, this.stamps, 0, nowMs, this.rate, this.burst);
  }
}
