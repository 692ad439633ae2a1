// The NAT event log of `masq run` with several workers: the exporter (src/natlog/) on this thread
// drains every worker's ring (shard-natlog.ts), and at a stop that ends the table every worker
// ends its mappings in the log before the senders close.
import { endShardTables, shardRings } from "../datapath/shard-natlog.ts";
import type { WorkerPool } from "../datapath/worker-pool.ts";
import { loadAddon } from "../io/addon.ts";
import { natLogEnabled } from "../natlog/config.ts";
import type { NatLogExporter } from "../natlog/exporter.ts";
import { startNatLog } from "../natlog/start.ts";
import type { RunConfig } from "./config.ts";
import type { createLogger } from "./log.ts";

type Logger = ReturnType<typeof createLogger>;

/** Starts the exporter over the workers' rings; undefined when the NAT log is off. */
export function startWorkersNatLog(
  cfg: RunConfig,
  pool: WorkerPool,
  log: Logger,
): NatLogExporter | undefined {
  if (!natLogEnabled(cfg.natLog)) return undefined;
  const rings = shardRings(pool.shards);
  const exporter = startNatLog(cfg.natLog, () => rings, loadAddon);
  log.info(
    { syslog: cfg.natLog.syslog?.text, ipfix: cfg.natLog.ipfix?.text, rings: rings.length },
    "NAT event log on",
  );
  return exporter;
}

/** Every running worker ends its table in the log (a stop that does not keep it), drained as it goes. */
export async function endWorkersNatLog(
  pool: WorkerPool,
  exporter: NatLogExporter,
  log: Logger,
): Promise<void> {
  try {
    const running = pool.running();
    const ended = await endShardTables(pool.shards, () => exporter.drain(), running);
    if (running.length < pool.count)
      log.warn({ running }, "NAT log: a worker that ended cannot end its mappings in the log");
    log.info(ended, "NAT log: every mapping, pin and port block ended with the table");
  } catch (err) {
    log.error({ err }, "NAT log: the workers' tables could not all be ended in the log");
  }
}
