// The `[timeouts]` section of the config file (the flows' idle timeouts, src/nat/timers.ts): its
// schema, how it is applied and the RFC minimums it may only undercut on request, apart from
// config.ts so that file stays the list of sections.
import * as v from "valibot";
import type { Timeouts } from "../nat/config.ts";
import { ConfigError } from "./config-error.ts";
import { flowTimeout, fragmentTimeout } from "./config-values.ts";

/** Minimums a configuration may only undercut with `allow_short_timeouts` (tests, labs). */
export const MIN_TIMEOUTS = {
  /** RFC 5382 REQ-5. */
  tcp_established: 7440,
  /** RFC 5382 REQ-5 (transitory: 4 min). */
  tcp_transitory: 240,
  /**
   * RFC 7857 §2.2 lets partially open connections go sooner than the transitory 4 min, but a
   * handshake must survive its retransmissions: the server's SYN-ACK after 1, 3, 7 and 15 s.
   */
  tcp_half_open: 30,
  /** RFC 4787 REQ-5. */
  udp: 120,
  /** RFC 5508 REQ-1. */
  icmp: 60,
} as const;

export const timeoutsSectionSchema = v.strictObject({
  allow_short_timeouts: v.optional(v.boolean()),
  tcp_established: v.optional(flowTimeout),
  tcp_transitory: v.optional(flowTimeout),
  tcp_half_open: v.optional(flowTimeout),
  tcp_closed: v.optional(flowTimeout),
  udp: v.optional(flowTimeout),
  icmp: v.optional(flowTimeout),
  generic: v.optional(flowTimeout),
  fragment: v.optional(fragmentTimeout),
});

export type TimeoutsSection = v.InferOutput<typeof timeoutsSectionSchema>;

/** Applies a parsed `[timeouts]` section of file `src`; errors name their key. */
export function applyTimeoutsSection(T: Timeouts, t: TimeoutsSection, src: string): void {
  if (t.tcp_established !== undefined) T.tcpEstablishedSec = t.tcp_established;
  if (t.tcp_transitory !== undefined) T.tcpTransitorySec = t.tcp_transitory;
  if (t.tcp_half_open !== undefined) T.tcpHalfOpenSec = t.tcp_half_open;
  if (t.tcp_closed !== undefined) T.tcpClosedSec = t.tcp_closed;
  if (t.udp !== undefined) T.udpSec = t.udp;
  if (t.icmp !== undefined) T.icmpSec = t.icmp;
  if (t.generic !== undefined) T.genericSec = t.generic;
  if (t.fragment !== undefined) T.fragmentSec = t.fragment;
  if (!t.allow_short_timeouts) checkTimeoutMinimums(t, src);
}

function checkTimeoutMinimums(t: TimeoutsSection, src: string): void {
  for (const key of Object.keys(MIN_TIMEOUTS) as Array<keyof typeof MIN_TIMEOUTS>) {
    const value = t[key];
    if (value !== undefined && value < MIN_TIMEOUTS[key])
      throw new ConfigError(
        `${src}: timeouts.${key}`,
        `${value} s is below the ${key === "tcp_half_open" ? "" : "RFC "}minimum of ${MIN_TIMEOUTS[key]} s (set timeouts.allow_short_timeouts = true for tests)`,
      );
  }
}
