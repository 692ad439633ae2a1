// Fragments across workers (several engine shards, issue 13). The TUN's steering sends every
// fragment from outside by a hash of (source, destination, IP id): a later fragment has no ports,
// so only that keeps a datagram's fragments together, but the worker it picks need not be the one
// that holds the datagram's flow (the owner of its destination port's slice). The first fragment
// names the owner; when that is another worker, the whole datagram is handed to it (the first,
// the fragments held before it, every later one), copied into the handoff outbox, which the
// datapath posts to the owner after each batch. The owner translates them as if they had come
// from its own queue. VPP's NAT hands packets between its workers the same way.
//
// The outbox is a fixed arena: nothing allocates per packet here; a full outbox drops, counted.
import { readU16 } from "../packet/checksum.ts";
import { IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import type { PortRange } from "./config.ts";
import * as C from "./counters.ts";
import { countReleaseLosses } from "./fragment-path.ts";
import { CLASS_OUTSIDE, FRAG_HANDOFF } from "./fragments.ts";
import {
  OVERRIDE_ENTRIES,
  overrideKey,
  type PortSlice,
  PPTP_CALL_IDS,
  portClasses,
  workerInClass,
} from "./port-slices.ts";
import type { EngineState } from "./state.ts";
import { HANDED } from "./verdicts.ts";

const OUTBOX_BYTES = 256 * 1024;
const OUTBOX_PACKETS = 512;

/** Packets this batch handed to other workers: worker, offset and length in `buf`. */
export class HandoffOutbox {
  readonly buf = new Uint8Array(OUTBOX_BYTES);
  /** worker, offset, length per packet. */
  readonly meta = new Uint32Array(3 * OUTBOX_PACKETS);
  count = 0;
  private used = 0;

  /** Copies the packet in; false when there is no room (the caller counts the drop). */
  push(worker: number, b: Uint8Array, off: number, len: number): boolean {
    if (this.count === OUTBOX_PACKETS || this.used + len > OUTBOX_BYTES) return false;
    this.buf.set(b.subarray(off, off + len), this.used);
    const m = 3 * this.count++;
    this.meta[m] = worker;
    this.meta[m + 1] = this.used;
    this.meta[m + 2] = len;
    this.used += len;
    return true;
  }

  clear(): void {
    this.count = 0;
    this.used = 0;
  }
}

/**
 * Which worker owns what arrives from outside, by the same slices the steering reads, and the
 * same override table: a forwarded or pinned port whose owner is not its slice's worker.
 */
export class ShardOwners {
  /** Worker + 1 by TCP port, then UDP port (0: the slice decides), as the steering's table. */
  private readonly overrides = new Uint8Array(OVERRIDE_ENTRIES);
  private readonly tcp: PortRange[];
  private readonly udp: PortRange[];
  private readonly icmp: PortRange[];
  /** PPTP's GRE call ids, sliced as the steering slices them (its key at offset 6). */
  private readonly gre: PortRange[];

  constructor(
    ports: { tcp: PortRange; udp: PortRange; icmp: PortRange },
    readonly slice: PortSlice,
  ) {
    this.tcp = portClasses(ports.tcp, true);
    this.udp = portClasses(ports.udp, true);
    this.icmp = portClasses(ports.icmp, false);
    this.gre = portClasses(PPTP_CALL_IDS, false);
  }

  /** TCP/UDP `port` belongs to `worker` whatever its slice (undefined: to its slice again). */
  setOverride(proto: number, port: number, worker: number | undefined): void {
    this.overrides[overrideKey(proto, port)] = worker === undefined ? 0 : worker + 1;
  }

  /**
   * The worker that owns the first fragment at `off` (header length `hl`), or -1 when it is
   * this one or none can be told (a fragment too short, an ICMP error). As the steering: a port
   * beyond the ranges, and every protocol but TCP, UDP, ICMP and GRE, belong to worker 0.
   */
  ownerOf(b: Uint8Array, off: number, hl: number, total: number, proto: number): number {
    const l4 = off + hl;
    const here = (w: number) => (w === this.slice.index ? -1 : w);
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      if (total < hl + 4) return -1;
      const key = readU16(b, l4 + 2);
      const pinned = this.overrides[overrideKey(proto, key)];
      if (pinned !== 0) return here(pinned - 1);
      return here(this.ownerIn(proto === IPPROTO_TCP ? this.tcp : this.udp, key));
    }
    if (proto === IPPROTO_ICMP) {
      if (total < hl + 8 || (b[l4] !== 0 && b[l4] !== 8)) return -1;
      return here(this.ownerIn(this.icmp, readU16(b, l4 + 4)));
    }
    if (proto === IPPROTO_GRE) return total < hl + 8 ? -1 : here(this.ownerIn(this.gre, readU16(b, l4 + 6)));
    return here(0);
  }

  /** The worker whose slice of `classes` holds `key`; 0 when none does (the steering's default). */
  private ownerIn(classes: readonly PortRange[], key: number): number {
    for (let i = 0; i < classes.length; i++) {
      const c = classes[i];
      if (key >= c.first && key <= c.last) return workerInClass(c, key, this.slice.count);
    }
    return 0;
  }
}

/** Copies the fragment at `off` into the outbox for `worker`: HANDED, or a counted drop. */
export function handOff(s: EngineState, worker: number, b: Uint8Array, off: number, len: number): number {
  if (!s.handoff!.push(worker, b, off, len)) return s.drop(C.D_FRAGMENT_HANDOFF_FULL);
  s.counters[C.C_FRAGMENTS_HANDED_OFF]++;
  return HANDED;
}

/**
 * The first fragment at `off` belongs to another worker's flow (`owner`): it goes there, then
 * the fragments of its datagram held here, and the later ones follow it (laterFragment).
 */
export function handOffDatagram(
  s: EngineState,
  b: Uint8Array,
  off: number,
  total: number,
  proto: number,
  src: number,
  dst: number,
  owner: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  const id = readU16(b, off + 4);
  const fr = s.fragments;
  fr.record(CLASS_OUTSIDE, src, dst, proto, id, FRAG_HANDOFF, owner, 0, s.nowSec);
  const verdict = handOff(s, owner, b, off, total);
  s.handoffWorker = owner;
  fr.takeHeld(src, dst, proto, id, s.handOffReleased);
  countReleaseLosses(s);
  return verdict;
}
