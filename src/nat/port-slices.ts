// Port slices: with several workers (one engine shard each), every port range is cut into one
// contiguous slice per worker, and a worker's allocator hands out ports of its own slice only.
// A packet from outside then names its worker by its destination port alone, which is what the
// TUN's steering program (src/datapath/steering-program.ts) reads: VPP's NAT does the same with
// `port_per_thread` and `get_thread_idx_by_port`. Each class of a range (RFC 4787 REQ-3: 0-1023
// and 1024-65535, see port-allocator.ts) is sliced on its own, so every worker keeps ports of
// both classes and port preservation and parity work in each.

import { IPPROTO_UDP } from "../packet/ipv4.ts";
import type { PortRange } from "./config.ts";
import { UNPRIVILEGED_FIRST } from "./port-allocator.ts";

/**
 * Entries of the override table (the steering's, and each shard's copy for the fragments it
 * hands on): 65536 ports for TCP, then UDP; a value is the worker + 1 (0: none, the slice decides).
 */
export const OVERRIDE_ENTRIES = 2 * 65536;

/** The override table's key for a TCP or UDP port. */
export function overrideKey(proto: number, port: number): number {
  return (proto === IPPROTO_UDP ? 65536 : 0) + (port & 0xffff);
}

/** A worker's share: worker `index` of `count`. */
export interface PortSlice {
  readonly index: number;
  readonly count: number;
}

/** The whole range: one worker. */
export const WHOLE_RANGE: PortSlice = { index: 0, count: 1 };

/**
 * PPTP call ids (the GRE key, RFC 2637): 1-65535. A worker gives its calls outside ids of its
 * own slice of them, as it gives ports, so that the server's GRE packets name the worker.
 */
export const PPTP_CALL_IDS: PortRange = { first: 1, last: 65535 };

/** The classes of `range`, each sliced on its own: two when `keepClass` and the range spans 1024. */
export function portClasses(range: PortRange, keepClass: boolean): PortRange[] {
  if (keepClass && range.first < UNPRIVILEGED_FIRST && range.last >= UNPRIVILEGED_FIRST)
    return [
      { first: range.first, last: UNPRIVILEGED_FIRST - 1 },
      { first: UNPRIVILEGED_FIRST, last: range.last },
    ];
  return [{ first: range.first, last: range.last }];
}

/** Ports per worker in a class of `size` ports (at least 1; the last worker takes the rest). */
export function portsPerWorker(size: number, count: number): number {
  return Math.max(1, Math.floor(size / count));
}

/** The worker whose slice of class `c` holds `port` (which lies in `c`). */
export function workerInClass(c: PortRange, port: number, count: number): number {
  const w = Math.floor((port - c.first) / portsPerWorker(c.last - c.first + 1, count));
  return w < count ? w : count - 1;
}

/** The worker that owns `port` of `range`, or -1 when the range does not hold it. */
export function portOwner(range: PortRange, keepClass: boolean, port: number, count: number): number {
  for (const c of portClasses(range, keepClass))
    if (port >= c.first && port <= c.last) return workerInClass(c, port, count);
  return -1;
}

/** Worker `slice.index`'s ports of class `c`, or undefined when it has none (a class smaller than the workers). */
export function sliceOfClass(c: PortRange, slice: PortSlice): PortRange | undefined {
  const size = c.last - c.first + 1;
  const per = portsPerWorker(size, slice.count);
  const first = c.first + slice.index * per;
  if (first > c.last) return undefined;
  const last = slice.index === slice.count - 1 ? c.last : Math.min(c.last, first + per - 1);
  return { first, last };
}
