// The engine benchmark: packets per second through existing flows (UDP and TCP, 64-byte packets)
// with 1 k, 100 k and 1 M active flows, new flows per second, and bytes of memory per flow.
// Usage: npm run bench:engine [-- --json] [-- --quick]
import { performance } from "node:perf_hooks";
import { hugePageAllocator } from "../src/io/huge-pages.ts";
import { defaultEngineConfig } from "../src/nat/config.ts";
import { FORWARD, NatEngine } from "../src/nat/engine.ts";
import { checksum, pseudoHeaderSum, writeU16, writeU32 } from "../src/packet/checksum.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../src/packet/ipv4.ts";

const json = process.argv.includes("--json");
// The tables on huge pages as `masq run` has them (when the addon is built); --no-huge-pages to compare.
const allocate = process.argv.includes("--no-huge-pages") ? undefined : hugePageAllocator();
const quick = process.argv.includes("--quick");
const PKT = 64;
const BATCH = 256;
const INSIDE_BASE = 0x0a000000; // 10.0.0.0/8
const REMOTE_BASE = 0xcb007100; // 203.0.113.0/24
const REMOTES_PER_MAPPING = 4;
const pool = Array.from({ length: 256 }, (_, i) => (0xc6336400 + i) >>> 0); // 198.51.100.0/24

function engineFor(flows: number): NatEngine {
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

function writePacket(
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Steady state: random existing flows, 64-byte outbound packets, in batches like a TUN read. */
function steady(proto: number, flows: number): number {
  const e = engineFor(flows);
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
  const runFor = (ms: number): number => {
    let pkts = 0;
    const t0 = performance.now();
    let now = 1000;
    while (performance.now() - t0 < ms) {
      for (let start = 0; start < N; start += BATCH) {
        // The copy stands for the TUN read that fills the buffer; it is part of the figure.
        work.set(pristine.subarray(start * PKT, (start + BATCH) * PKT));
        e.prefetch(work, meta, BATCH);
        for (let k = 0; k < BATCH; k++) {
          if (e.process(work, k * PKT, PKT, now) !== FORWARD)
            throw new Error(`steady: dropped (reason ${e.lastDrop})`);
        }
        pkts += BATCH;
      }
      now += 1;
    }
    return pkts / ((performance.now() - t0) / 1000);
  };
  runFor(quick ? 100 : 300); // warm up the JIT
  const rates: number[] = [];
  for (let r = 0; r < (quick ? 3 : 5); r++) rates.push(runFor(quick ? 200 : 500));
  return median(rates) / 1e6;
}

/** New flows per second: every packet a new connection from a new inside port (a new mapping). */
function newFlows(): { rate: number; bytesPerFlow: number } {
  const capacity = 1 << 20;
  const count = quick ? 200_000 : 500_000;
  const rates: number[] = [];
  let bytesPerFlow = 0;
  for (let r = 0; r < (quick ? 2 : 3); r++) {
    const e = new NatEngine(
      defaultEngineConfig({
        inside: [{ addr: INSIDE_BASE, len: 8 }],
        outside: pool,
        mode: "pool",
        maxFlows: capacity,
        maxMappings: capacity,
        maxFlowsPerHost: 1 << 20,
        maxHosts: 1 << 16,
      }),
      allocate,
    );
    bytesPerFlow = e.memoryBytes() / capacity;
    // The packets are made before the clock starts (as the steady-state runs do): the figure is
    // the engine's, plus the copy that stands for the TUN read filling the batch buffer.
    const pristine = new Uint8Array(count * PKT);
    for (let n = 0; n < count; n++)
      writePacket(
        pristine,
        n * PKT,
        IPPROTO_UDP,
        (INSIDE_BASE + 1 + (n % 50000)) >>> 0,
        1024 + Math.floor(n / 50000),
        REMOTE_BASE + 7,
        53,
        0,
      );
    const work = new Uint8Array(BATCH * PKT);
    const meta = new Uint32Array(BATCH * 2);
    for (let k = 0; k < BATCH; k++) {
      meta[2 * k] = k * PKT;
      meta[2 * k + 1] = PKT;
    }
    const t0 = performance.now();
    for (let i = 0; i + BATCH <= count; i += BATCH) {
      work.set(pristine.subarray(i * PKT, (i + BATCH) * PKT));
      e.prefetch(work, meta, BATCH);
      for (let k = 0; k < BATCH; k++) {
        if (e.process(work, k * PKT, PKT, 1000) !== FORWARD)
          throw new Error(`new flows: refused (reason ${e.lastDrop})`);
      }
    }
    const secs = (performance.now() - t0) / 1000;
    rates.push((count - (count % BATCH)) / secs);
  }
  return { rate: median(rates), bytesPerFlow };
}

/** Bytes per flow as configured for the steady-state runs (maxMappings = flows / 2). */
function steadyBytesPerFlow(flows: number): number {
  return engineFor(flows).memoryBytes() / flows;
}

const sizes: Array<[string, number]> = [
  ["1k", 1000],
  ["100k", 100_000],
  ["1m", 1_000_000],
];
const result: Record<string, number> = {};
const log = (s: string) => {
  if (!json) console.log(s);
  else console.error(s);
};
log(
  `masq engine benchmark (node ${process.version}, one core, ${PKT}-byte packets, batches of ${BATCH}, ${allocate ? "tables on huge pages" : "tables on normal pages"})`,
);
for (const [label, n] of sizes) {
  const udp = steady(IPPROTO_UDP, n);
  const tcp = steady(IPPROTO_TCP, n);
  result[`steady_mpps_${label}`] = round(udp);
  result[`steady_mpps_tcp_${label}`] = round(tcp);
  log(`  ${label.padStart(4)} flows: UDP ${udp.toFixed(2)} Mpps   TCP ${tcp.toFixed(2)} Mpps`);
}
const nf = newFlows();
result.new_flows_per_s = Math.round(nf.rate);
log(`  new flows: ${(nf.rate / 1e6).toFixed(2)} M/s (each a new mapping and port)`);
result.bytes_per_flow = Math.round(steadyBytesPerFlow(1_000_000));
result.bytes_per_flow_one_mapping_each = Math.round(nf.bytesPerFlow);
log(
  `  memory: ${result.bytes_per_flow} bytes per flow (1 M flows, mappings = flows / 2); ${result.bytes_per_flow_one_mapping_each} with a mapping per flow`,
);
if (json) console.log(JSON.stringify(result));

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
