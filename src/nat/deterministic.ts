// Deterministic NAT (`[cgnat] mode = "deterministic"`, RFC 7422; VPP's det44): every inside
// address of one prefix has a fixed outside address and port range, computed from the
// configuration alone, so no mapping needs a log record and any node that knows the
// configuration answers "who had A:P" with the inverse.
//
// The function. Inside prefix of N addresses (inside index i = address - prefix base), outside
// pool of A addresses (index 0..A-1, in configuration order), port range lo..hi (the
// unprivileged class of the range: 1024 and up where it has it):
//   H = ceil(N / A)                 inside addresses per outside address
//   S = floor((hi - lo + 1) / H)    ports per inside address
//   address(i) = floor(i / H),  first(i) = lo + (i mod H) * S,  last(i) = first(i) + S - 1
// and the inverse, for an outside address a and a port p in lo .. lo + H*S - 1:
//   k = floor((p - lo) / S),  i = a * H + k  (no inside address when i >= N).
// Consecutive inside addresses share an outside address, each with its own S ports: the ranges
// are disjoint and together cover every inside address (test/unit/nat/deterministic.test.ts).
import type { PortAllocator } from "./port-allocator.ts";
import { takeInRange } from "./port-blocks.ts";

/** Fewest ports an inside address may get; a configuration giving fewer is refused. */
export const MIN_DETERMINISTIC_PORTS = 64;

export interface DeterministicPlan {
  /** The inside prefix's first address and its size (addresses). */
  base: number;
  size: number;
  /** Outside addresses in the pool. */
  addresses: number;
  /** The first port of the ranges, and the last port there is. */
  lo: number;
  hi: number;
}

export class Deterministic {
  readonly base: number;
  readonly size: number;
  readonly addresses: number;
  readonly lo: number;
  /** Inside addresses per outside address, and ports per inside address. */
  readonly perAddress: number;
  readonly ports: number;

  constructor(p: DeterministicPlan) {
    this.base = p.base >>> 0;
    this.size = p.size;
    this.addresses = p.addresses;
    this.lo = p.lo;
    this.perAddress = Math.ceil(p.size / p.addresses);
    this.ports = Math.floor((p.hi - p.lo + 1) / this.perAddress);
  }

  /** The inside index of `inAddr`, or -1 when it is not in the prefix. */
  indexOf(inAddr: number): number {
    const i = ((inAddr >>> 0) - this.base) >>> 0;
    return i < this.size ? i : -1;
  }

  /** The outside address index of inside index i. */
  addressOf(i: number): number {
    return Math.floor(i / this.perAddress);
  }

  /** The first port of inside index i's range (its last is first + ports - 1). */
  firstPort(i: number): number {
    return this.lo + (i % this.perAddress) * this.ports;
  }

  /** The inverse: the inside address holding port `port` of outside address index a, or -1. */
  insideOf(a: number, port: number): number {
    if (a < 0 || a >= this.addresses || port < this.lo) return -1;
    const k = Math.floor((port - this.lo) / this.ports);
    if (k >= this.perAddress) return -1;
    const i = a * this.perAddress + k;
    return i < this.size ? (this.base + i) >>> 0 : -1;
  }

  /**
   * A port of inside index i's range on its address: `preferred` when it lies there and is free,
   * else a free one (of preferred's parity first with `parity`); NO_PORT when the range is used up.
   */
  allocate(ports: PortAllocator, i: number, preferred: number, parity: boolean): number {
    const first = this.firstPort(i);
    return takeInRange(ports, this.addressOf(i), first, first + this.ports - 1, preferred, parity);
  }
}

/**
 * Why a plan cannot give every inside address MIN_DETERMINISTIC_PORTS ports, or undefined when
 * it can.
 */
export function deterministicProblem(
  p: DeterministicPlan,
  minPorts = MIN_DETERMINISTIC_PORTS,
): string | undefined {
  const d = new Deterministic(p);
  if (d.ports >= minPorts) return undefined;
  return `${p.size} inside addresses on ${p.addresses} outside addresses leave ${d.ports} ports (${p.lo}-${p.hi}) each, fewer than ${minPorts}: use a smaller inside prefix or more addresses`;
}
