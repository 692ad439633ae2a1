// The main thread's view of several engine shards, one per worker, with the shape of the
// engine's control-plane methods (synchronous, over callSync): per-host calls go to the worker
// the host hashes to (the steering rule, steering-model.ts hostWorker), listings and statistics
// ask every worker and merge. A pin's id is made unique across shards: shard id × workers +
// worker, so unpin and renew find the owner again from the id alone.
import type { PinRequest, PinResult } from "../nat/engine.ts";
import type { EngineStats, FlowView, PinView } from "../nat/view.ts";
import type { ShardClient } from "./shard-channel.ts";
import { SHARD_OPS } from "./shard-ops.ts";
import { mergeEngineStats } from "./shard-stats.ts";
import { hostWorker } from "./steering-model.ts";

export class ShardedEngine {
  constructor(private readonly client: ShardClient) {}

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

  /** A pin on the shard that owns the inside host; its id unique across shards. */
  pinMapping(req: PinRequest): PinResult {
    const w = this.ownerOf(req.inAddr);
    const r = this.client.callSync<PinResult>(w, SHARD_OPS.pinMapping, req);
    return "error" in r ? r : { ...r, id: this.globalId(r.id, w) };
  }

  unpin(id: number): boolean {
    const { worker, local } = this.localId(id);
    return this.client.callSync<boolean>(worker, SHARD_OPS.unpin, local);
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
