// The control plane of `masq run` with several workers (worker-pool.ts): the control socket and
// the metrics over the shards' merged figures, `masq stats` with each worker's line, the
// address follower of interface mode (every shard moves to the new address and resets its own
// hosts' connections), `masq reload` over every shard (worker-reload.ts), the NAT log's counters
// (worker-natlog.ts), and the start-up summary. Forwards, NAT-PMP/PCP and UPnP run here over the
// shards (sharded-engine.ts pins each on its host's worker); what still drives one engine from
// this thread is refused by the configuration (workers-config.ts) or answered "not yet" here.
import { kernelQueueDrops } from "../datapath/tuns.ts";
import { mergeDatapathStats, type WorkerCounters, WorkerPool } from "../datapath/worker-pool.ts";
import { loadAddon } from "../io/addon.ts";
import type { EngineConfig } from "../nat/config.ts";
import type { PinView } from "../nat/view.ts";
import type { ForwardRegistry } from "../portmap/forwards.ts";
import type { PortmapLeases } from "../portmap/leases.ts";
import type { PortmapServer } from "../portmap/server.ts";
import type { UpnpServer } from "../portmap/upnp/server.ts";
import { onWanTransition } from "./address-change.ts";
import { controlApi } from "./api-handlers.ts";
import type { StreamStats } from "./chunked.ts";
import type { RunConfig } from "./config.ts";
import type { Resolved } from "./engine-config.ts";
import type { WorkerFigures } from "./format.ts";
import { ipv6FilterOptions } from "./ipv6-config.ts";
import type { createLogger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { type MetricsListener, serveMetrics } from "./metrics-http.ts";
import type { Reloader } from "./reload.ts";
import { ControlServer, type ControlSource } from "./server.ts";
import { followWanAddress, type WanFollower } from "./wan-follow.ts";
import { whoisAnswer } from "./whois.ts";

const NOT_YET = "not yet with several workers";

/**
 * Starts `cfg.workers` workers (pinned to CPUs when `pin`), or says why they could not start
 * (the caller then runs one loop on one queue and says so).
 */
export async function startWorkerPool(
  cfg: RunConfig,
  host: Resolved,
  engine: EngineConfig,
  pin: boolean,
  log: ReturnType<typeof createLogger>,
): Promise<WorkerPool | string> {
  const ip6 = ipv6FilterOptions(cfg);
  try {
    return await WorkerPool.start({
      count: cfg.workers,
      engine,
      alg: cfg.alg,
      mtu: host.mtu,
      tuns: { inside: cfg.tun, outside: cfg.tunOutside },
      vnetHdr: cfg.offload,
      ...(pin ? { cpus: workerCpus(cfg.workers) } : {}),
      busyPollUs: cfg.busyPollUs,
      priority: cfg.datapathPriority,
      io: cfg.datapathIo,
      ...(ip6 ? { ip6 } : {}),
    });
  } catch (err) {
    log.warn({ err }, `${cfg.workers} workers could not start: one packet loop on one queue instead`);
    return (err as Error).message;
  }
}

/** The CPUs the workers are pinned to, one each in order (the allowed ones, round robin). */
export function workerCpus(count: number, allowed: readonly number[] = loadAddon().allowedCpus()): number[] {
  const cpus = [...new Set(allowed)].sort((a, b) => a - b);
  return Array.from({ length: count }, (_, i) => cpus[i % cpus.length]);
}

/**
 * Both TUNs' counters by name, each the sum over the workers' queues; with `sysfs`, also the
 * kernel's drops at the device's queues (its tx_dropped, as for one queue).
 */
export function queueCounters(
  names: { inside: string; outside: string },
  perWorker: ReadonlyArray<{ inside: Record<string, number>; outside: Record<string, number> }>,
  sysfs: boolean,
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const side of ["inside", "outside"] as const) {
    const sum: Record<string, number> = {};
    for (const w of perWorker) for (const [k, v] of Object.entries(w[side])) sum[k] = (sum[k] ?? 0) + v;
    if (sysfs) sum.kernelQueueDrops = kernelQueueDrops(names[side]);
    out[names[side]] = sum;
  }
  return out;
}

export interface WorkersControlOptions {
  cfg: RunConfig;
  host: Resolved;
  pool: WorkerPool;
  /** /sys is this namespace's (the kernel's queue drops can be read). */
  sysfs: boolean;
  stateFile: string;
  log: ReturnType<typeof createLogger>;
  stop: (keepState: boolean) => void;
  streams: () => StreamStats | undefined;
  /** `masq reload` and its counters (worker-reload.ts). */
  reloader: Reloader;
  /** The NAT event log's counters; undefined while it is off. */
  natLog: () => Record<string, number> | undefined;
  forwards: ForwardRegistry;
  /** The port-mapping services, once started (undefined while off). */
  portmap: () => PortmapServer | undefined;
  upnp: () => UpnpServer | undefined;
  leases: () => PortmapLeases | undefined;
  /** Interface mode: the ports steered in for mappings beyond the range ("6881/udp"). */
  mappedPorts: () => string[];
  /** The IPv6 firewall's counters (every worker's) and pinholes; absent: it is off. */
  ipv6?: () => Record<string, number> | undefined;
  ipv6Pins?: () => PinView[];
}

/** Starts the control socket, the metrics and (interface mode) the address follower. */
export async function startWorkersControl(o: WorkersControlOptions): Promise<{
  server: ControlServer;
  metricsListener: MetricsListener | undefined;
  follower: WanFollower | undefined;
  /** The control API, which the dashboard shows and changes forwards through. */
  api: ControlSource;
}> {
  const { cfg, host, pool, log } = o;
  const shards = pool.engine;
  const startedMs = performance.now();
  const names = { inside: cfg.tun, outside: cfg.tunOutside };
  const cpus = workerCpusOf(cfg, pool);
  // One round of asking the workers per reply: its datapath, device and per-worker parts are
  // built in the same turn, and read the same answers.
  let asked: WorkerCounters[] | undefined;
  const counters = (): WorkerCounters[] => {
    if (asked === undefined) {
      asked = pool.counters();
      queueMicrotask(() => {
        asked = undefined;
      });
    }
    return asked;
  };
  const datapath = () => ({ ...mergeDatapathStats(counters().map((c) => c.datapath)) });
  const devices = () =>
    queueCounters(
      names,
      counters().map((c) => c.devices),
      o.sysfs,
    );
  const workers = (): WorkerFigures[] => {
    const stats = shards.workerStats();
    const per = counters();
    return stats.map((e, w) => ({
      worker: w,
      ...(cpus?.[w] !== undefined ? { cpu: cpus[w] } : {}),
      flows: e.flows,
      translatedOut: e.counters.translated_out ?? 0,
      translatedIn: e.counters.translated_in ?? 0,
      drops: Object.entries(e.counters).reduce((n, [k, v]) => (k.startsWith("drop_") ? n + v : n), 0),
      datapath: { ...per[w].datapath },
    }));
  };
  const metrics = createMetrics({
    engine: () => shards.stats(),
    datapath,
    devices,
    firewall: () => shards.firewallList(),
    portmap: () => o.portmap()?.stats(),
    upnp: () => o.upnp()?.stats(),
    natLog: o.natLog,
    reloads: () => o.reloader.stats,
  });
  const metricsListener = await serveMetrics(cfg, metrics, log);
  const api = controlApi({
    engine: shards,
    host,
    startedMs,
    datapathCpu: undefined,
    datapath,
    devices,
    portmap: o.portmap,
    upnp: o.upnp,
    forwards: o.forwards,
    ...(o.ipv6 ? { ipv6: o.ipv6 } : {}),
    ...(o.ipv6Pins ? { ipv6Pins: o.ipv6Pins } : {}),
    streams: o.streams,
    metrics,
    reloader: o.reloader,
    natLog: o.natLog,
    keepStateRefused: `masq stop --keep-state: ${NOT_YET}; masq stop ends every connection`,
    workers,
    whois: (q) => whoisAnswer(shards, q),
    stop: o.stop,
  });
  const server = await ControlServer.start(cfg.controlSocket, api);
  let follower: WanFollower | undefined;
  if (host.mode === "interface") {
    const context = {
      cfg,
      host,
      translator: shards,
      forwards: o.forwards,
      portmap: o.portmap,
      leases: o.leases,
      upnp: o.upnp,
      mappedPorts: o.mappedPorts,
      stateFile: o.stateFile,
      log,
    };
    follower = await followWanAddress(cfg, host, (t) => onWanTransition(context, t), log);
  }
  return { server, metricsListener, follower, api };
}

export function workerCpusOf(cfg: RunConfig, pool: WorkerPool): number[] | undefined {
  return cfg.datapathCpu === "off" ? undefined : workerCpus(pool.count);
}
