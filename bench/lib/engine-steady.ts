// The engine benchmark's steady-state run (bench/engine.ts), shared with its worker threads
// (bench/engine-worker.ts), which run it side by side for the all-workers figure.
import { performance } from "node:perf_hooks";
import { getHeapSpaceStatistics } from "node:v8";
import { defaultEngineConfig } from "../../src/nat/config.ts";
import { FORWARD, NatEngine } from "../../src/nat/engine.ts";
import type { TableAllocator } from "../../src/nat/table-memory.ts";
import { checksum, pseudoHeaderSum, writeU16, writeU32 } from "../../src/packet/checksum.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../src/packet/ipv4.ts";

export interface SteadyOptions {
  quick: boolean;
  allocate?: TableAllocator;
  /** Called once the flows and packets are made, before the warm-up (a barrier for workers). */
  beforeRun?: () => void;
  /** Receives the JS heap bytes the packet loop allocated per packet, measured after the rounds. */
  onHeapPerPacket?: (bytes: number | null) => void;
}

function youngBytesUsed(): number {
  return getHeapSpaceStatistics().find((sp) => sp.space_name === "new_space")?.space_used_size ?? 0;
}

/**
 * JS heap bytes allocated per packet by `run(batches)` (which returns the packets it processed):
 * the growth of the young generation over the run. A scavenge meanwhile empties it, so a run
 * that ends with less than it started is tried again shorter; null when none fits.
 */
export function heapBytesPerPacket(run: (batches: number) => number): number | null {
  for (let batches = 4096; batches >= 4; batches >>= 2) {
    const before = youngBytesUsed();
    const packets = run(batches);
    const after = youngBytesUsed();
    if (after >= before) return (after - before) / packets;
  }
  return null;
}

export const PKT = 64;
export const BATCH = 256;
export const INSIDE_BASE = 0x0a000000; // 10.0.0.0/8
export const REMOTE_BASE = 0xcb007100; // 203.0.113.0/24
const REMOTES_PER_MAPPING = 4;
export const pool = Array.from({ length: 256 }, (_, i) => (0xc6336400 + i) >>> 0); // 198.51.100.0/24

export function engineFor(flows: number, allocate?: TableAllocator): NatEngine {
  return new NatEngine(
    defaultEngineConfig({
      inside: [{ addr: INSIDE_BASE, len: 8 }],
      outside: pool,
      mode: "pool",
      filtering: "address-dependent",
      maxFlows: flows,
      maxMappings: Math.ceil(flows / 2),
      maxFlowsPerHost: 1 << 20,
      maxHosts: 1 << 16,
    }),
    allocate,
  );
}

/** Flow i: inside host/port and remote of the i-th flow (REMOTES_PER_MAPPING flows per mapping). */
function tupleOf(i: number) {
  const m = Math.floor(i / REMOTES_PER_MAPPING);
  return {
    src: (INSIDE_BASE + 1 + (m % 60000)) >>> 0,
    sport: 1024 + Math.floor(m / 60000),
    dst: (REMOTE_BASE + 1 + (i % REMOTES_PER_MAPPING)) >>> 0,
    dport: 443,
  };
}

export function writePacket(
  b: Uint8Array,
  off: number,
  proto: number,
  src: number,
  sport: number,
  dst: number,
  dport: number,
  tcpFlags: number,
  seq = 0,
  ack = 0,
): void {
  b.fill(0, off, off + PKT);
  b[off] = 0x45;
  writeU16(b, off + 2, PKT);
  b[off + 8] = 64;
  b[off + 9] = proto;
  writeU32(b, off + 12, src);
  writeU32(b, off + 16, dst);
  writeU16(b, off + 10, checksum(b, off, 20));
  const l4 = off + 20;
  writeU16(b, l4, sport);
  writeU16(b, l4 + 2, dport);
  if (proto === IPPROTO_UDP) {
    writeU16(b, l4 + 4, PKT - 20);
    writeU16(b, l4 + 6, checksum(b, l4, PKT - 20, pseudoHeaderSum(src, dst, proto, PKT - 20)));
  } else {
    writeU32(b, l4 + 4, seq);
    writeU32(b, l4 + 8, ack);
    b[l4 + 12] = 0x50;
    b[l4 + 13] = tcpFlags;
    writeU16(b, l4 + 14, 65535);
    writeU16(b, l4 + 16, checksum(b, l4, PKT - 20, pseudoHeaderSum(src, dst, proto, PKT - 20)));
  }
}

/** Initial sequence numbers of the benchmark's TCP connections (client, server). */
const ISN_OUT = 0x10000000;
const ISN_IN = 0x70000000;

/** Creates `flows` flows (TCP ones established by a three-way handshake). */
function populate(e: NatEngine, proto: number, flows: number): void {
  const b = new Uint8Array(PKT);
  for (let i = 0; i < flows; i++) {
    const t = tupleOf(i);
    writePacket(b, 0, proto, t.src, t.sport, t.dst, t.dport, 0x02, ISN_OUT);
    if (e.process(b, 0, PKT, 1000) !== FORWARD)
      throw new Error(`populate: flow ${i} refused (reason ${e.lastDrop})`);
    if (proto === IPPROTO_TCP) {
      const op = (b[20] << 8) | b[21];
      const oa = ((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15]) >>> 0;
      writePacket(b, 0, proto, t.dst, t.dport, oa, op, 0x12, ISN_IN, ISN_OUT + 1);
      if (e.process(b, 0, PKT, 1000) !== FORWARD) throw new Error("populate: SYN-ACK refused");
      writePacket(b, 0, proto, t.src, t.sport, t.dst, t.dport, 0x10, ISN_OUT + 1, ISN_IN + 1);
      if (e.process(b, 0, PKT, 1000) !== FORWARD) throw new Error("populate: ACK refused");
    }
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Steady state: random existing flows, 64-byte outbound packets, in batches like a TUN read. */
export function steady(proto: number, flows: number, o: SteadyOptions): number {
  const { quick } = o;
  const e = engineFor(flows, o.allocate);
  populate(e, proto, flows);
  const N = 1 << 16;
  const pristine = new Uint8Array(N * PKT);
  let x = 12345;
  for (let k = 0; k < N; k++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const t = tupleOf(x % flows);
    writePacket(pristine, k * PKT, proto, t.src, t.sport, t.dst, t.dport, 0x10, ISN_OUT + 1, ISN_IN + 1);
  }
  const work = new Uint8Array(BATCH * PKT);
  const meta = new Uint32Array(BATCH * 2);
  for (let k = 0; k < BATCH; k++) {
    meta[2 * k] = k * PKT;
    meta[2 * k + 1] = PKT;
  }
  /** One batch: the packets from `start` of the pristine ones, at engine time `now`. */
  const batch = (start: number, now: number): void => {
    // The copy stands for the TUN read that fills the buffer; it is part of the figure.
    work.set(pristine.subarray(start * PKT, (start + BATCH) * PKT));
    e.prefetch(work, meta, BATCH);
    for (let k = 0; k < BATCH; k++) {
      if (e.process(work, k * PKT, PKT, now) !== FORWARD)
        throw new Error(`steady: dropped (reason ${e.lastDrop})`);
    }
  };
  const runFor = (ms: number): number => {
    let pkts = 0;
    const t0 = performance.now();
    let now = 1000;
    while (performance.now() - t0 < ms) {
      for (let start = 0; start < N; start += BATCH) {
        batch(start, now);
        pkts += BATCH;
      }
      now += 1;
    }
    return pkts / ((performance.now() - t0) / 1000);
  };
  o.beforeRun?.();
  runFor(quick ? 100 : 300); // warm up the JIT
  const rates: number[] = [];
  for (let r = 0; r < (quick ? 3 : 5); r++) rates.push(runFor(quick ? 200 : 500));
  if (o.onHeapPerPacket) {
    let now = 100_000;
    o.onHeapPerPacket(
      heapBytesPerPacket((batches) => {
        for (let i = 0; i < batches; i++) {
          batch((i * BATCH) % N, now);
          now += 0.25; // a fractional clock, as performance.now() gives the datapath
        }
        return batches * BATCH;
      }),
    );
  }
  return median(rates) / 1e6;
}
