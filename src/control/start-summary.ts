// The summary `masq run` prints on stderr once it is ready: what it translates, where, with what.

import type { MssClampView } from "../datapath/shard-ops.ts";
import type { WorkerPool } from "../datapath/worker-pool.ts";
import type { NatEngine } from "../nat/engine.ts";
import type { RunConfig } from "./config.ts";
import type { Resolved } from "./engine-config.ts";
import { workerCpusOf } from "./worker-run.ts";

export function printSummary(
  cfg: RunConfig,
  host: Resolved,
  engine: NatEngine,
  offloads: boolean,
  rpsCpus: string | undefined,
  datapathCpu: number | undefined,
  io: string,
  workersFallback?: string,
): void {
  const mb = (engine.memoryBytes() / 1048576).toFixed(1);
  const lines = [
    "",
    `masq: ${cfg.inside.join(", ")} ⇒ ${cfg.outside}, ${host.mode} mode, public ${host.publicAddresses.join(", ") || `none yet (following ${cfg.outside})`}`,
    `      inside networks ${host.insideNetworks.join(", ")}; ports ${cfg.ports.first}-${cfg.ports.last}; filtering ${cfg.filtering}; ${mssSummary(engine)}`,
    `      TUNs ${cfg.tun} (inside) and ${cfg.tunOutside} (outside) (mtu ${host.mtu}${offloads ? ", offloads on" : ""}${rpsCpus ? `, RPS on CPUs ${rpsCpus}` : ""}); packet loop on ${datapathCpu === undefined ? "any CPU" : `CPU ${datapathCpu}`} (${io}); up to ${cfg.limits.maxFlows} flows (${mb} MiB)`,
    `      control socket ${cfg.controlSocket}: masq conns / masq stats --socket ${cfg.controlSocket}`,
    ...(workersFallback
      ? [`      one worker on one queue, not the ${cfg.workers} asked for: ${workersFallback}`]
      : []),
    "",
  ];
  process.stderr.write(lines.join("\n"));
}

/** "MSS clamp 1452 out, 1460 in (pmtu: MTU 1492 outside, 1500 inside)", or "MSS clamp off". */
function mssSummary(engine: { readonly mssClamp: MssClampView }): string {
  const m = engine.mssClamp;
  if (m.setting === "off") return "MSS clamp off";
  const how = m.setting === "pmtu" ? `pmtu: MTU ${m.outsideMtu} outside, ${m.insideMtu} inside` : "fixed";
  return `MSS clamp ${m.outbound} out, ${m.inbound} in (${how})`;
}

/** The start-up summary's lines for several workers. */
export function printWorkersSummary(cfg: RunConfig, host: Resolved, pool: WorkerPool): void {
  const cpus = workerCpusOf(cfg, pool);
  const lines = [
    "",
    `masq: ${cfg.inside.join(", ")} ⇒ ${cfg.outside}, ${host.mode} mode, public ${host.publicAddresses.join(", ") || `none yet (following ${cfg.outside})`}`,
    `      inside networks ${host.insideNetworks.join(", ")}; ports ${cfg.ports.first}-${cfg.ports.last}; filtering ${cfg.filtering}; ${mssSummary(pool.engine)}`,
    `      ${pool.count} workers on multi-queue TUNs ${cfg.tun} (inside) and ${cfg.tunOutside} (outside) (mtu ${host.mtu}), steered by eBPF; ${cpus ? `CPUs ${cpus.join(", ")}` : "any CPU"} (${[...new Set(pool.io())].join("; ")}); up to ${cfg.limits.maxFlows} flows in all`,
    `      control socket ${cfg.controlSocket}: masq conns / masq stats --socket ${cfg.controlSocket}`,
    "",
  ];
  process.stderr.write(lines.join("\n"));
}
