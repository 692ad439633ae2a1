// The control operations a worker serves for its engine shard (serveShard's handlers): what the
// main thread's facade (sharded-engine.ts) asks of each shard. Answers are plain data, so they
// cross the MessagePort by structured clone; a refused pin is answered as the engine answers it.

import type { NatEngine, PinRequest } from "../nat/engine.ts";
import type { PinView } from "../nat/view.ts";
import type { ShardHandlers } from "./shard-channel.ts";

/** Names of the operations, shared by both ends. */
export const SHARD_OPS = {
  stats: "stats",
  flows: "flows",
  pinList: "pinList",
  pinMapping: "pinMapping",
  unpin: "unpin",
  renewPin: "renewPin",
} as const;

export function engineShardOps(engine: NatEngine): ShardHandlers {
  return {
    [SHARD_OPS.stats]: () => engine.stats(),
    [SHARD_OPS.flows]: (limit: number | null) => engine.flows(limit ?? Number.POSITIVE_INFINITY),
    [SHARD_OPS.pinList]: (): PinView[] => engine.pinList(),
    [SHARD_OPS.pinMapping]: (req: PinRequest) => engine.pinMapping(req),
    [SHARD_OPS.unpin]: (id: number) => engine.unpin(id),
    [SHARD_OPS.renewPin]: (a: { id: number; expiresAtSec: number }) => engine.renewPin(a.id, a.expiresAtSec),
  };
}
