// The control operations a worker serves for its engine shard (serveShard's handlers): what the
// main thread's facade (sharded-engine.ts) asks of each shard. Answers are plain data, so they
// cross the MessagePort by structured clone; a refused pin is answered as the engine answers it.

import type { NatEngine, PinRequest } from "../nat/engine.ts";
import type { FlowFilter } from "../nat/flow-listing.ts";
import { FlowFields, type PinView } from "../nat/view.ts";
import type { ShardHandlers } from "./shard-channel.ts";

/** Names of the operations, shared by both ends. */
export const SHARD_OPS = {
  stats: "stats",
  flows: "flows",
  pinList: "pinList",
  pinMapping: "pinMapping",
  unpin: "unpin",
  renewPin: "renewPin",
  firewallList: "firewallList",
  connsRows: "connsRows",
  /** Served by worker-main.ts (they need the worker's datapath too). */
  setAddressless: "setAddressless",
  changePublicAddress: "changePublicAddress",
  datapathStats: "datapathStats",
  deviceStats: "deviceStats",
  /** The worker's thread scheduling, as applyDatapathPriority said it. */
  priority: "priority",
  /** How the worker's queues reach the kernel, as datapathIoSummary says it. */
  io: "io",
} as const;

/** A shard's part of a connection listing: its flows' fields, how many matched, how many it holds. */
export interface ConnsRows {
  rows: FlowFields[];
  matched: number;
  total: number;
}

export function engineShardOps(engine: NatEngine): ShardHandlers {
  return {
    [SHARD_OPS.stats]: () => engine.stats(),
    [SHARD_OPS.flows]: (limit: number | null) => engine.flows(limit ?? Number.POSITIVE_INFINITY),
    [SHARD_OPS.pinList]: (): PinView[] => engine.pinList(),
    [SHARD_OPS.pinMapping]: (req: PinRequest) => engine.pinMapping(req),
    [SHARD_OPS.unpin]: (id: number) => engine.unpin(id),
    [SHARD_OPS.renewPin]: (a: { id: number; expiresAtSec: number }) => engine.renewPin(a.id, a.expiresAtSec),
    [SHARD_OPS.firewallList]: () => engine.firewall?.list() ?? [],
    // The whole listing at once, between two of the worker's batches: the main thread merges the
    // shards' rows and writes them in chunks (conns-listing.ts).
    [SHARD_OPS.connsRows]: (q: { filter: FlowFilter; limit: number | null }): ConnsRows => {
      const listing = engine.listFlows(q.filter, q.limit ?? Number.POSITIVE_INFINITY);
      const rows: FlowFields[] = [];
      while (!listing.done) listing.step(4096, (f) => rows.push(engine.readFlow(f, new FlowFields())));
      return { rows, matched: listing.matched, total: engine.flowTable.count };
    },
  };
}
