// `masq run --dry-run`: resolves the configuration against the host as a run does (interfaces,
// addresses, the ephemeral port range, the rp_filter settings, the CPUs), prints the host plan
// with every step's undo (and the rules the config file's forwards add), and exits. It only reads: no TUN is opened, nothing is applied or
// recorded, no leftover is removed, and it needs no root.
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { RunConfig } from "../control/config.ts";
import { formatHostPlan, planConfigForwards, planRunHost } from "../control/host-plan.ts";
import { resolveHost } from "../control/host-resolution.ts";
import { placeDatapath } from "../datapath/cpu-placement.ts";
import { cpuSetMask, readRpFilterState, sysfsIsOurs } from "../host/index.ts";
import { tryLoadAddon } from "../io/addon.ts";

export async function runDryRun(
  cfg: RunConfig,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<number> {
  const host = await resolveHost(cfg);
  // The CPUs as a run sees them (its affinity); without the addon built, all of them.
  const allowed = tryLoadAddon()?.allowedCpus() ?? [...Array(availableParallelism()).keys()];
  const placement = placeDatapath(cfg.datapathCpu, allowed, cfg.rps);
  // A run checks each TUN's rps_cpus file once the TUN exists; here there is none yet, so RPS is
  // planned wherever this namespace's /sys is its own (the kernel has had rps_cpus since 2.6.35).
  const rpsCpus =
    placement.rpsCpus !== undefined && (await sysfsIsOurs()) ? cpuSetMask(placement.rpsCpus) : undefined;
  const steps = planRunHost(cfg, host, {
    // A run asks the TUN once it exists; a new TUN has IPv6 wherever the kernel has it on.
    disableTunIpv6: existsSync("/proc/sys/net/ipv6/conf/all"),
    rpFilter: await readRpFilterState(),
    rpsCpus,
  });
  for (const line of formatHostPlan(cfg, host, [...steps, ...planConfigForwards(cfg, host)])) out(line);
  return 0;
}
