// Bounded number values of the config file's schema: whole seconds, rates and counts with upper
// bounds, so a typo (1e12 s, 1e300) is refused with the key named rather than taken for "forever".
import * as v from "valibot";
import type { MssClampSetting } from "../nat/config.ts";

export const seconds = v.pipe(v.number(), v.integer("must be a whole number of seconds"), v.minValue(1));

/**
 * A flow timeout of a week is already longer than any NAT keeps state (netfilter's longest
 * default is 5 days, for established TCP), and keeps every deadline far inside the engine's
 * 32-bit seconds clock.
 */
export const MAX_FLOW_TIMEOUT_SEC = 7 * 86_400;
/** RFC 791: a reassembly timer is never longer than the largest time to live, 255 s. */
export const MAX_FRAGMENT_TIMEOUT_SEC = 255;
/** The flow table's own bound (max_flows); a per-host limit above it limits nothing. */
export const MAX_FLOWS = 16_777_216;
/**
 * Ten times what the engine opens on one core (about 1.1 M new flows/s): a rate limit above it
 * limits nothing (0 means no limit).
 */
export const MAX_NEW_FLOWS_PER_SEC = 10_000_000;

export const flowTimeout = v.pipe(
  seconds,
  v.maxValue(MAX_FLOW_TIMEOUT_SEC, `must be at most ${MAX_FLOW_TIMEOUT_SEC} seconds (a week)`),
);

export const fragmentTimeout = v.pipe(
  seconds,
  v.maxValue(MAX_FRAGMENT_TIMEOUT_SEC, `must be at most ${MAX_FRAGMENT_TIMEOUT_SEC} seconds (RFC 791)`),
);

export const perSecond = v.pipe(
  v.number(),
  v.integer("must be a whole number per second"),
  v.minValue(0),
  v.maxValue(MAX_NEW_FLOWS_PER_SEC, `must be at most ${MAX_NEW_FLOWS_PER_SEC} per second (0: no limit)`),
);

/** A number of flows, from `min` up to the flow table's bound. */
export const flowCount = (min: number) =>
  v.pipe(
    v.number(),
    v.integer("must be a whole number"),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(MAX_FLOWS, `must be at most ${MAX_FLOWS}`),
  );

/**
 * The smallest MSS `mss_clamp` takes: every IPv4 host accepts 576-byte datagrams, so 536 is what
 * TCP assumes without the option (RFC 9293 §3.7.1); a clamp below it only slows connections.
 */
export const MIN_MSS = 536;
/** The largest IPv4 datagram less the two headers. */
export const MAX_MSS = 65_495;
export const MSS_CLAMP_HINT = `must be "pmtu", "off" or an MSS of ${MIN_MSS}-${MAX_MSS} bytes`;

/** `mss_clamp`: "pmtu", "off" or a number of bytes (as text on the command line); else undefined. */
export function mssClampValue(value: string | number): MssClampSetting | undefined {
  if (value === "pmtu" || value === "off") return value;
  const n = typeof value === "number" ? value : /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN;
  return Number.isInteger(n) && n >= MIN_MSS && n <= MAX_MSS ? n : undefined;
}
