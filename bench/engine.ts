// The engine benchmark: packets per second through existing flows (UDP and TCP, 64-byte packets)
// with 1 k, 100 k and 1 M active flows, new flows per second, and bytes of memory per flow.
// Then the 1 M-flow UDP figure for all workers together: one engine per worker thread, side by side.
// Usage: npm run bench:engine [-- --json] [-- --quick] [-- --workers=N] (default: one per CPU)
import { availableParallelism } from "node:os";
import { performance } from "node:perf_hooks";
import { hugePageAllocator } from "../src/io/huge-pages.ts";
import { defaultEngineConfig } from "../src/nat/config.ts";
import { FORWARD, NatEngine } from "../src/nat/engine.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../src/packet/ipv4.ts";
import {
  BATCH,
  engineFor,
  INSIDE_BASE,
  median,
  PKT,
  pool,
  REMOTE_BASE,
  steady,
  writePacket,
} from "./lib/engine-steady.ts";
import { allWorkersSteady } from "./lib/engine-workers.ts";

const json = process.argv.includes("--json");
// The tables on huge pages as `masq run` has them (when the addon is built); --no-huge-pages to compare.
const allocate = process.argv.includes("--no-huge-pages") ? undefined : hugePageAllocator();
const quick = process.argv.includes("--quick");
const workersArg = process.argv.find((a) => a.startsWith("--workers="));
const WORKERS = workersArg ? Number(workersArg.slice("--workers=".length)) : availableParallelism();

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
// The hot path allocates nothing per packet (docs/design.md): a heap number boxed per packet
// costs a scavenge, a pause of the loop, every few MB.
const heap: Array<number | null> = [];
const onHeapPerPacket = (b: number | null) => heap.push(b);
for (const [label, n] of sizes) {
  const udp = steady(IPPROTO_UDP, n, { quick, allocate, onHeapPerPacket });
  const tcp = steady(IPPROTO_TCP, n, { quick, allocate, onHeapPerPacket });
  result[`steady_mpps_${label}`] = round(udp);
  result[`steady_mpps_tcp_${label}`] = round(tcp);
  log(`  ${label.padStart(4)} flows: UDP ${udp.toFixed(2)} Mpps   TCP ${tcp.toFixed(2)} Mpps`);
}
const heapMax = heap.every((b) => b !== null) ? Math.max(...(heap as number[])) : null;
result.heap_bytes_per_packet = heapMax === null ? -1 : round(heapMax);
log(
  `  JS heap allocated per packet: ${heap.map((b) => (b === null ? "?" : b.toFixed(1))).join(" / ")} bytes (UDP, TCP at each size; a scavenge every run: "?")`,
);
const nf = newFlows();
result.new_flows_per_s = Math.round(nf.rate);
log(`  new flows: ${(nf.rate / 1e6).toFixed(2)} M/s (each a new mapping and port)`);
result.bytes_per_flow = Math.round(steadyBytesPerFlow(1_000_000));
result.bytes_per_flow_one_mapping_each = Math.round(nf.bytesPerFlow);
log(
  `  memory: ${result.bytes_per_flow} bytes per flow (1 M flows, mappings = flows / 2); ${result.bytes_per_flow_one_mapping_each} with a mapping per flow`,
);
if (WORKERS > 1) {
  const each = await allWorkersSteady(WORKERS, 1_000_000, quick);
  const total = each.reduce((a, b) => a + b, 0);
  result.steady_mpps_1m_all_workers = round(total);
  result.workers = WORKERS;
  log(
    `  all ${WORKERS} workers together, 1 M flows each (UDP): ${total.toFixed(2)} Mpps (${each.map((x) => x.toFixed(2)).join(" + ")})`,
  );
}
if (json) console.log(JSON.stringify(result));

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
