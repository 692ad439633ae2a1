// The control operations a worker serves for its engine shard (serveShard's handlers): what the
// main thread's facade (sharded-engine.ts) asks of each shard. Answers are plain data, so they
// cross the MessagePort by structured clone; a refused pin is answered as the engine answers it.

import type { NatEngine, PinRequest } from "../nat/engine.ts";
import type { FlowFilter } from "../nat/flow-listing.ts";
import type { MssClamp } from "../nat/mss-clamp.ts";
import { FlowFields, type PinView } from "../nat/view.ts";
import type { ShardHandlers } from "./shard-channel.ts";
import { scanShard } from "./shard-scan.ts";

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
  /** The dashboard's pass over the table (shard-scan.ts), in slices between the worker's batches. */
  scan: "scan",
  /** A pin's deadline and note (null: gone), for the port-mapping protocols' listings. */
  pinGet: "pinGet",
  clockSec: "clockSec",
  pairedAddress: "pairedAddress",
  /** Ports of this shard's slice held by another shard's pin (src/nat/foreign-ports.ts). */
  reserveForeignPort: "reserveForeignPort",
  releaseForeignPort: "releaseForeignPort",
  holdsOutsidePort: "holdsOutsidePort",
  /** `masq whois` on this shard's blocks (each worker's blocks lie in its own slice). */
  whois: "whois",
  portBlocksOn: "portBlocksOn",
  /** The MSS clamp as the shard applies it (for the start-up summary). */
  mssClamp: "mssClamp",
  /** A port owned by another worker than its slice's (worker 0 also writes the steering's table). */
  setPortOwner: "setPortOwner",
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

/** An outside port of a pinned mapping (on any public address), as the cross-slice bookkeeping names it. */
export interface OutsidePort {
  proto: "tcp" | "udp";
  port: number;
}

/** The MSS clamp's settings as the summary shows them. */
export type MssClampView = Pick<MssClamp, "setting" | "outbound" | "inbound" | "insideMtu" | "outsideMtu">;

/** A port's owner for the steering's override table: undefined, its slice's worker again. */
export interface PortOwner {
  proto: number;
  port: number;
  worker: number | undefined;
}

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
    [SHARD_OPS.scan]: (limit: number) => scanShard(engine, limit),
    [SHARD_OPS.whois]: (q: { outAddr: number; port: number; atMs: number | null }) =>
      engine.whois(q.outAddr, q.port, q.atMs ?? undefined),
    [SHARD_OPS.portBlocksOn]: () => engine.portBlocksOn,
    [SHARD_OPS.mssClamp]: (): MssClampView => {
      const m = engine.mssClamp;
      return {
        setting: m.setting,
        outbound: m.outbound,
        inbound: m.inbound,
        insideMtu: m.insideMtu,
        outsideMtu: m.outsideMtu,
      };
    },
    [SHARD_OPS.pinGet]: (id: number) => {
      const pin = engine.pins.get(id);
      return pin === undefined
        ? null
        : { expiresAtSec: pin.expiresAtSec, note: pin.note, origin: pin.origin };
    },
    [SHARD_OPS.clockSec]: () => engine.clockSec,
    [SHARD_OPS.pairedAddress]: (inAddr: number) => engine.pairedAddress(inAddr),
    [SHARD_OPS.reserveForeignPort]: (p: OutsidePort) => engine.reserveForeignPort(p.proto, p.port),
    [SHARD_OPS.releaseForeignPort]: (p: OutsidePort) => engine.releaseForeignPort(p.proto, p.port),
    [SHARD_OPS.holdsOutsidePort]: (p: OutsidePort) => engine.holdsOutsidePort(p.proto, p.port),
    [SHARD_OPS.setPortOwner]: (o: PortOwner) => engine.setPortOwner(o.proto, o.port, o.worker),
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
