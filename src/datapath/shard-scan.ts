// The dashboard's pass over a shard's flow table (several workers): the pass the sampler makes
// over one engine (src/nat/table-scan.ts), done on the worker that holds the table, in the same
// 2 ms slices between the worker's batches, so only the result crosses to the main thread: the
// first `limit` flows' fields and every inside host's flow count and bytes.
import type { NatEngine } from "../nat/engine.ts";
import { scanTable } from "../nat/table-scan.ts";
import { FlowFields } from "../nat/view.ts";

/** A shard's part: `hosts` is [inside address, flows, bytes out, bytes in] per host. */
export interface ShardScan {
  flows: FlowFields[];
  hosts: [number, number, number, number][];
  /** Milliseconds the pass held the worker's thread (its slices added up). */
  busyMs: number;
  /** Flows in the shard's table at the end of the pass. */
  total: number;
}

export async function scanShard(engine: NatEngine, limit: number): Promise<ShardScan> {
  const r = await scanTable(engine, limit, (f) => Object.assign(new FlowFields(), f));
  return {
    flows: r.flows,
    hosts: [...r.hosts].map(([addr, h]) => [addr, h.flows, h.bytesOut, h.bytesIn]),
    busyMs: r.busyMs,
    total: engine.flowTable.count,
  };
}
