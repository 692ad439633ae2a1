// `masq reload` and SIGHUP with several workers: the same reloader as for one engine (reload.ts:
// the file re-read and validated here, a restart-only key refused, nothing changed on failure),
// whose live settings go to every worker's shard (shard-live.ts), and whose forwards are pinned
// over the shards (sharded-engine.ts).
import { ShardedLive } from "../datapath/shard-live.ts";
import type { WorkerPool } from "../datapath/worker-pool.ts";
import { loadAddon } from "../io/addon.ts";
import type { ForwardRegistry } from "../portmap/forwards.ts";
import type { RunConfig } from "./config.ts";
import type { createLogger } from "./log.ts";
import { liveSettingsFor, Reloader } from "./reload.ts";

export function workersReloader(
  cfg: RunConfig,
  reread: (() => RunConfig) | undefined,
  pool: WorkerPool,
  forwards: ForwardRegistry,
  log: ReturnType<typeof createLogger>,
): Reloader {
  const live = new ShardedLive(pool.shards, liveSettingsFor(cfg));
  return new Reloader({
    running: cfg,
    resolve: reread ?? (() => cfg),
    live: (s) => live.apply(s),
    forwards,
    log,
    // One setting for every thread's loop (the addon's).
    setBusyPoll: (us) => loadAddon().setBusyPoll(us),
  });
}
