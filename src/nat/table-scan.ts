// One pass over a flow table for the dashboard (src/control/web/sampler.ts): the first `limit`
// flows, kept as `keep` makes them, and every inside host's flow count and bytes. The pass runs
// in slices of about 2 ms with the event loop's turns between them, so the thread it runs on (the
// packet loop's: the main thread with one engine, a worker with several) is never held longer.
import type { FlowFilter, FlowListing } from "./flow-listing.ts";
import { FlowFields } from "./view.ts";

const SLICE_MS = 2;
const STEP = 512;

export interface HostSums {
  flows: number;
  bytesOut: number;
  bytesIn: number;
}

/** What the pass reads: the engine's listing (NatEngine, or one engine's facade). */
export interface ScannableEngine {
  listFlows(filter: FlowFilter, limit: number): Pick<FlowListing, "step" | "done">;
  readFlow(f: number, out: FlowFields): FlowFields;
}

export async function scanTable<T>(
  engine: ScannableEngine,
  limit: number,
  keep: (fields: FlowFields) => T,
): Promise<{ flows: T[]; hosts: Map<number, HostSums>; busyMs: number }> {
  const listing = engine.listFlows({}, Number.POSITIVE_INFINITY);
  const fields = new FlowFields();
  const flows: T[] = [];
  const hosts = new Map<number, HostSums>();
  const emit = (f: number) => {
    engine.readFlow(f, fields);
    const h = hosts.get(fields.inAddr);
    if (h) {
      h.flows++;
      h.bytesOut += fields.bytesOut;
      h.bytesIn += fields.bytesIn;
    } else hosts.set(fields.inAddr, { flows: 1, bytesOut: fields.bytesOut, bytesIn: fields.bytesIn });
    if (flows.length < limit) flows.push(keep(fields));
  };
  let busyMs = 0;
  for (;;) {
    const started = performance.now();
    const deadline = started + SLICE_MS;
    do listing.step(STEP, emit);
    while (!listing.done && performance.now() < deadline);
    busyMs += performance.now() - started;
    if (listing.done) return { flows, hosts, busyMs };
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
