// The NAT event log with several workers: each shard records into its own event ring
// (src/nat/nat-events.ts), which lives in shared memory, so the main thread's exporter drains
// every worker's ring itself, on its timer, as it drains one engine's: no message per event or
// per batch, and the packet loop only ever writes into its ring. The workers hand over their
// rings' memory once at start, and at a stop each ends its table in its own ring (end-of-log.ts),
// waiting for the main thread to drain whenever the ring is half full.
import type { EndOfTable } from "../nat/end-of-log.ts";
import type { NatEngine } from "../nat/engine.ts";
import { NatEventRing } from "../nat/nat-events.ts";
import type { ShardClient, ShardHandlers } from "./shard-channel.ts";

/** Names of the operations, shared by both ends. */
export const NAT_LOG_OPS = {
  /** The shard's ring's memory (null: no NAT log). */
  ring: "natLogRing",
  /** Stops the shard's loop and ends every mapping of its table in the log. */
  endOfTable: "natLogEndOfTable",
} as const;

/** How long a worker waits at most for the main thread to drain its ring, each time it is half full. */
const DRAIN_WAIT_MS = 5000;

/** A worker's end; `stopLoop` stops its loop's timers (no expiry after the table's end), as one engine's stop does. */
export function natLogShardOps(engine: NatEngine, stopLoop: () => void, clock: () => number): ShardHandlers {
  return {
    [NAT_LOG_OPS.ring]: (): SharedArrayBuffer | null => engine.natEvents?.buffer ?? null,
    [NAT_LOG_OPS.endOfTable]: (): EndOfTable => {
      stopLoop();
      const ring = engine.natEvents;
      engine.tick(clock());
      return engine.logEndOfTable(() => ring?.waitForRoom(DRAIN_WAIT_MS));
    },
  };
}

/** The main thread's view of every worker's ring, in worker order (none without the NAT log). */
export function shardRings(client: ShardClient): NatEventRing[] {
  const rings: NatEventRing[] = [];
  for (let w = 0; w < client.workers; w++) {
    const buffer = client.callSync<SharedArrayBuffer | null>(w, NAT_LOG_OPS.ring);
    if (buffer !== null) rings.push(NatEventRing.over(buffer));
  }
  return rings;
}

/**
 * The shards `workers` (every one by default; a worker that crashed answers nothing) end their
 * tables in the log at once, while `drain` (the exporter's) empties the rings here every few ms;
 * the counts added up.
 */
export async function endShardTables(
  client: ShardClient,
  drain: () => void,
  workers: readonly number[] = Array.from({ length: client.workers }, (_, w) => w),
  timeoutMs = 60_000,
): Promise<EndOfTable> {
  const timer = setInterval(drain, 2);
  let late: NodeJS.Timeout | undefined;
  try {
    const parts = await Promise.race([
      Promise.all(workers.map((w) => client.call<EndOfTable>(w, NAT_LOG_OPS.endOfTable))),
      new Promise<never>((_, reject) => {
        late = setTimeout(
          () => reject(new Error(`the workers did not end their tables within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
    return parts.reduce(
      (sum, p) => ({ flows: sum.flows + p.flows, pins: sum.pins + p.pins, blocks: sum.blocks + p.blocks }),
      { flows: 0, pins: 0, blocks: 0 },
    );
  } finally {
    clearInterval(timer);
    clearTimeout(late);
    drain();
  }
}
