// The main thread's view of several engine shards, one per worker, with the shape of the
// engine's control-plane methods (synchronous, over callSync): per-host calls go to the worker
// the host hashes to (the steering rule, steering-model.ts hostWorker), listings and statistics
// ask every worker and merge. A pin's id is made unique across shards: shard id × workers +
// worker, so unpin and renew find the owner again from the id alone. A pin whose outside port
// lies beyond its worker's slice gets the steering's override and the slice owner's reservation
// (cross-slice-pins.ts) before it is made.

import type { EngineConfig } from "../nat/config.ts";
import type { PinRequest, PinResult } from "../nat/engine.ts";
import type { FlowFilter } from "../nat/flow-listing.ts";
import type { BlockHolder } from "../nat/port-blocks.ts";
import type { HostSums } from "../nat/table-scan.ts";
import type { EngineStats, FlowFields, FlowView, PinView } from "../nat/view.ts";
import { tcpOrUdp } from "../packet/ipv4.ts";
import type { RuleHits } from "../policy/rules.ts";
import { CrossSlicePins } from "./cross-slice-pins.ts";
import type { ShardClient } from "./shard-channel.ts";
import {
  type ConnsRows,
  type MssClampView,
  type OutsidePort,
  type PortOwner,
  SHARD_OPS,
} from "./shard-ops.ts";
import type { ShardScan } from "./shard-scan.ts";
import { mergeEngineStats } from "./shard-stats.ts";
import { hostWorker } from "./steering-model.ts";

/** A pin as the port-mapping protocols read it (its deadline, note and origin). */
type PinInfo = { expiresAtSec: number; note: string; origin: string };

/** A shard may take this long to list a large table between two of its batches. */
const LISTING_MS = 30_000;

export class ShardedEngine {
  /** The flows of the latest listing, merged; readFlow reads them by index. */
  private listed: FlowFields[] = [];
  private total = 0;

  private none = false;
  private readonly crossSlice: CrossSlicePins;

  /** `config`: the configuration every shard was started with (each on its own port slice). */
  constructor(
    private readonly client: ShardClient,
    readonly config: EngineConfig,
  ) {
    const call = <T>(w: number, op: string, args: unknown) => this.client.callSync<T>(w, op, args);
    this.crossSlice = new CrossSlicePins({
      workers: client.workers,
      ports: config.ports,
      reserve: (w, proto, port) =>
        call<boolean>(w, SHARD_OPS.reserveForeignPort, { proto, port } satisfies OutsidePort),
      release: (w, proto, port) =>
        call<void>(w, SHARD_OPS.releaseForeignPort, { proto, port } satisfies OutsidePort),
      holds: (w, proto, port) =>
        call<boolean>(w, SHARD_OPS.holdsOutsidePort, { proto, port } satisfies OutsidePort),
      setOwner: (proto, port, worker) => {
        const owner: PortOwner = { proto: tcpOrUdp(proto), port, worker };
        this.every<void>(SHARD_OPS.setPortOwner, owner);
      },
    });
  }

  /** The engine clock in seconds (worker 0's; the workers share the main thread's clock). */
  get clockSec(): number {
    return this.client.callSync<number>(0, SHARD_OPS.clockSec);
  }

  /** A pin's deadline and note by its id (undefined: gone, or lapsed in its worker). */
  readonly pins = {
    get: (id: number): PinInfo | undefined => {
      const { worker, local } = this.localId(id);
      return this.client.callSync<PinInfo | null>(worker, SHARD_OPS.pinGet, local) ?? undefined;
    },
  };

  /** The outside address paired with inside host `inAddr` (0 while interface mode has none). */
  pairedAddress(inAddr: number): number {
    return this.client.callSync<number>(this.ownerOf(inAddr), SHARD_OPS.pairedAddress, inAddr);
  }

  /** The MSS clamp (every shard has the same). */
  get mssClamp(): MssClampView {
    return this.client.callSync<MssClampView>(0, SHARD_OPS.mssClamp);
  }

  /** Whether port blocks are on (every shard has them or none does). */
  get portBlocksOn(): boolean {
    return this.client.callSync<boolean>(0, SHARD_OPS.portBlocksOn);
  }

  /** Who held outside `outAddr`:`port`: the shards' answers together (a block lies in one slice). */
  whois(outAddr: number, port: number, atMs?: number): BlockHolder[] {
    return this.every<BlockHolder[]>(SHARD_OPS.whois, { outAddr, port, atMs: atMs ?? null }).flat();
  }

  /** Ports held beyond their slice whose pins lapsed, or whose last flow ended, go back. */
  sweepPins(): void {
    this.crossSlice.sweep((id) => this.pins.get(id) !== undefined);
  }

  /** Whether interface mode has no public address now (every shard was told so). */
  get addressless(): boolean {
    return this.none;
  }

  /** Tells every shard that interface mode has, or has no, public address. */
  setAddressless(none: boolean): void {
    this.every<void>(SHARD_OPS.setAddressless, none);
    this.none = none;
  }

  /**
   * Every shard moves to public address `to`; each sends the resets for its own hosts'
   * connections out of its queue. The counts add up; `old` is the shards' (all the same).
   */
  changePublicAddress(to: number): { old: number; flows: number; moved: number; resets: number } {
    const parts = this.every<{ old: number; flows: number; moved: number; resets: number }>(
      SHARD_OPS.changePublicAddress,
      to,
    );
    this.none = false;
    this.config.outside[0] = to;
    return {
      old: parts[0].old,
      flows: parts.reduce((n, p) => n + p.flows, 0),
      moved: parts.reduce((n, p) => n + p.moved, 0),
      resets: parts.reduce((n, p) => n + p.resets, 0),
    };
  }

  /** The firewall's rules, hits added up over the shards (absent when there are none). */
  get firewall(): { list(): RuleHits[] } | undefined {
    return { list: () => this.firewallList() };
  }

  /** Flows in all shards when the latest listing (or the dashboard's pass) was taken. */
  get flowTable(): { readonly count: number } {
    return { count: this.total };
  }

  /** The firewall rules with their hits added up over the shards (every shard has the same rules). */
  firewallList(): RuleHits[] {
    const parts = this.every<RuleHits[]>(SHARD_OPS.firewallList);
    return parts[0].map((rule, i) => ({
      ...rule,
      hits: parts.reduce((n, p) => n + (p[i]?.hits ?? 0), 0),
    }));
  }

  /**
   * A listing over every shard, in the shape of the engine's (conns-listing.ts): each shard
   * lists its flows, the most recently active first when there is a limit, and the merge keeps
   * the `limit` most recently active of them all.
   */
  listFlows(
    filter: FlowFilter,
    limit: number,
  ): { step(n: number, emit: (f: number) => void): void; done: boolean; matched: number } {
    const each = Number.isFinite(limit) ? limit : null;
    const parts = Array.from({ length: this.workers }, (_, w) =>
      this.client.callSync<ConnsRows>(w, SHARD_OPS.connsRows, { filter, limit: each }, LISTING_MS),
    );
    let rows = parts.flatMap((p) => p.rows);
    if (rows.length > limit) rows = rows.sort((a, b) => a.idleSec - b.idleSec).slice(0, limit);
    this.listed = rows;
    this.total = parts.reduce((n, p) => n + p.total, 0);
    const matched = parts.reduce((n, p) => n + p.matched, 0);
    let next = 0;
    return {
      matched,
      get done() {
        return next >= rows.length;
      },
      step(n: number, emit: (f: number) => void) {
        for (const end = Math.min(rows.length, next + n); next < end; ) emit(next++);
      },
    };
  }

  /**
   * The dashboard's pass (shard-scan.ts) on every worker at once: the first `limit` flows of them
   * all, each inside host's flows and bytes (a host lives on one worker), and the longest time
   * one worker's thread was held.
   */
  async scanFlows(
    limit: number,
  ): Promise<{ flows: FlowFields[]; hosts: Map<number, HostSums>; busyMs: number }> {
    const parts = await Promise.all(
      Array.from({ length: this.workers }, (_, w) => this.client.call<ShardScan>(w, SHARD_OPS.scan, limit)),
    );
    this.total = parts.reduce((n, p) => n + p.total, 0);
    const hosts = new Map<number, HostSums>();
    for (const p of parts)
      for (const [addr, flows, bytesOut, bytesIn] of p.hosts) hosts.set(addr, { flows, bytesOut, bytesIn });
    return {
      flows: parts.flatMap((p) => p.flows).slice(0, limit),
      hosts,
      busyMs: Math.max(0, ...parts.map((p) => p.busyMs)),
    };
  }

  /** Copies flow `f` of the latest listing into `out`. */
  readFlow(f: number, out: FlowFields): FlowFields {
    return Object.assign(out, this.listed[f]);
  }

  get workers(): number {
    return this.client.workers;
  }

  /** The worker that owns inside host `inAddr` (its mappings, pins, limits). */
  ownerOf(inAddr: number): number {
    return hostWorker(inAddr, this.workers);
  }

  /** Each worker's statistics, in worker order (for per-worker counters). */
  workerStats(): EngineStats[] {
    return this.every<EngineStats>(SHARD_OPS.stats);
  }

  /** All shards' statistics added up, as one engine's. */
  stats(): EngineStats {
    return mergeEngineStats(this.workerStats());
  }

  /** Every shard's flows (at most `limit` in all), worker by worker. */
  flows(limit = Number.POSITIVE_INFINITY): FlowView[] {
    const each = Number.isFinite(limit) ? limit : null;
    const out: FlowView[] = [];
    for (const part of this.every<FlowView[]>(SHARD_OPS.flows, each)) {
      for (const f of part) {
        if (out.length >= limit) return out;
        out.push(f);
      }
    }
    return out;
  }

  /** Every shard's pins, with ids unique across shards. */
  pinList(): PinView[] {
    return this.every<PinView[]>(SHARD_OPS.pinList).flatMap((pins, w) =>
      pins.map((p) => ({ ...p, id: this.globalId(p.id, w) })),
    );
  }

  /**
   * A pin on the shard that owns the inside host; its id unique across shards. A port it names
   * beyond that shard's slice is claimed first (the override, the slice owner's reservation).
   */
  pinMapping(req: PinRequest): PinResult {
    const w = this.ownerOf(req.inAddr);
    if (req.outPort) {
      const problem = this.crossSlice.claim(req.proto, req.outPort, w);
      if (problem !== undefined) return { error: problem, code: "MASQ_ERR_PORT_IN_USE" };
    }
    const r = this.client.callSync<PinResult>(w, SHARD_OPS.pinMapping, req);
    if ("error" in r) {
      if (req.outPort) this.crossSlice.unclaim(req.proto, req.outPort);
      return r;
    }
    // A mapping the pin found (no port asked for) may hold a port beyond the slice already.
    if (!req.outPort && this.crossSlice.claim(req.proto, r.outPort, w) !== undefined) {
      this.client.callSync<boolean>(w, SHARD_OPS.unpin, r.id);
      return {
        error: `port ${r.outPort}/${req.proto} is held by another worker`,
        code: "MASQ_ERR_PORT_IN_USE",
      };
    }
    const id = this.globalId(r.id, w);
    this.crossSlice.bind(id, req.proto, r.outPort);
    return { ...r, id };
  }

  unpin(id: number): boolean {
    const { worker, local } = this.localId(id);
    const done = this.client.callSync<boolean>(worker, SHARD_OPS.unpin, local);
    this.crossSlice.unpinned(id);
    return done;
  }

  renewPin(id: number, expiresAtSec: number): boolean {
    const { worker, local } = this.localId(id);
    return this.client.callSync<boolean>(worker, SHARD_OPS.renewPin, { id: local, expiresAtSec });
  }

  private every<T>(op: string, args?: unknown): T[] {
    return Array.from({ length: this.workers }, (_, w) => this.client.callSync<T>(w, op, args));
  }

  private globalId(local: number, worker: number): number {
    return local * this.workers + worker;
  }

  private localId(id: number): { worker: number; local: number } {
    return { worker: id % this.workers, local: Math.floor(id / this.workers) };
  }
}
