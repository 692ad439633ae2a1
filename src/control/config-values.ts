// Bounded number values of the config file's schema: whole seconds, rates and counts with upper
// bounds, so a typo (1e12 s, 1e300) is refused with the key named rather than taken for "forever".
import * as v from "valibot";
import type { MssClampSetting } from "../nat/config.ts";

/**
 * How `boundedInt` words a refused bound: "number", "must be at least 16"; "number and unit",
 * "must be at least 8 ports" (and "1 second", not "1 seconds").
 */
export type BoundWording = "number" | "number and unit";

/** Messages `boundedInt` uses instead of the ones it words itself (or valibot's own). */
export interface BoundedIntMessages {
  /** Both bounds worded from the number (and the unit); omitted: valibot's own message. */
  bounds?: BoundWording;
  number?: string;
  integer?: string;
  min?: string;
  max?: string;
}

/**
 * A whole number of `unit` from `min` to `max`. Not an integer: "must be a whole number of UNIT"
 * ("must be a whole number" when `unit` is "", valibot's own message when it is undefined).
 * Out of bounds: as `messages.bounds` says, else valibot's own message; any message in
 * `messages` is used as it is instead. An upper bound of Infinity is no bound.
 */
export function boundedInt(
  unit: string | undefined,
  min: number,
  max: number = Number.POSITIVE_INFINITY,
  messages: BoundedIntMessages = {},
) {
  const integer =
    unit === undefined
      ? undefined
      : unit === ""
        ? "must be a whole number"
        : `must be a whole number of ${unit}`;
  const bound = (n: number): string | undefined => {
    if (messages.bounds === undefined) return undefined;
    if (messages.bounds === "number" || !unit) return `${n}`;
    return `${n} ${n === 1 ? unit.replace(/s$/, "") : unit}`;
  };
  const least = bound(min);
  const most = bound(max);
  return v.pipe(
    v.number(messages.number),
    v.integer(messages.integer ?? integer),
    v.minValue(min, messages.min ?? (least === undefined ? undefined : `must be at least ${least}`)),
    v.maxValue(max, messages.max ?? (most === undefined ? undefined : `must be at most ${most}`)),
  );
}

export const seconds = boundedInt("seconds", 1);

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

export const flowTimeout = boundedInt("seconds", 1, MAX_FLOW_TIMEOUT_SEC, {
  max: `must be at most ${MAX_FLOW_TIMEOUT_SEC} seconds (a week)`,
});

export const fragmentTimeout = boundedInt("seconds", 1, MAX_FRAGMENT_TIMEOUT_SEC, {
  max: `must be at most ${MAX_FRAGMENT_TIMEOUT_SEC} seconds (RFC 791)`,
});

export const perSecond = boundedInt(undefined, 0, MAX_NEW_FLOWS_PER_SEC, {
  integer: "must be a whole number per second",
  max: `must be at most ${MAX_NEW_FLOWS_PER_SEC} per second (0: no limit)`,
});

/** A number of flows, from `min` up to the flow table's bound. */
export const flowCount = (min: number) => boundedInt("", min, MAX_FLOWS, { bounds: "number" });

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
