// The host plan of `masq run` (host/plan.ts) for a resolved configuration, and its printing for
// `masq run --dry-run`: the one place that turns the run's settings into plan options, so what
// the dry run prints is what a run applies.
import { formatArgv } from "../host/exec.ts";
import {
  fillPrior,
  forwardRuleSteps,
  type HostStep,
  planHostSetup,
  type RpFilterState,
} from "../host/index.ts";
import type { RunConfig } from "./config.ts";
import type { Resolved } from "./engine-config.ts";

/**
 * Packets the kernel may queue for masq on each TUN: absorbs bursts while a batch is processed.
 * 500 downloads starting at once overflowed 4096 on the outside TUN (3-4 k drops in the first
 * round of every HTTP x500 run, about 0.7x the warm rounds' rate); 8192 dropped none. Each slot
 * can hold a coalesced packet of up to 64 KB, so the queue is kept no longer than that needs.
 */
export const TUN_TX_QUEUE_LEN = 8192;

/** What the plan needs that only the host can say (read just before it is applied). */
export interface HostObservations {
  /** The TUNs have IPv6 (the kernel has it), which masq turns off on them. */
  disableTunIpv6: boolean;
  rpFilter: RpFilterState;
  /** The RPS mask for the TUNs; undefined: RPS stays off. */
  rpsCpus: string | undefined;
}

export function planRunHost(cfg: RunConfig, host: Resolved, seen: HostObservations): HostStep[] {
  return planHostSetup({
    mode: host.mode,
    tun: cfg.tun,
    tunOutside: cfg.tunOutside,
    inside: cfg.inside,
    outside: cfg.outside,
    insideNetworks: host.insideNetworks,
    mtu: host.mtu,
    txQueueLen: TUN_TX_QUEUE_LEN,
    disableTunIpv6: seen.disableTunIpv6,
    rpFilter: seen.rpFilter,
    ...(cfg.ipv6.firewall ? { ipv6InsideNetworks: cfg.ipv6.insideNetworks } : {}),
    ...(seen.rpsCpus !== undefined ? { rpsCpus: seen.rpsCpus } : {}),
    ...(host.mode === "pool"
      ? { pool: cfg.addresses }
      : { ports: cfg.ports, publicAddress: host.publicAddresses[0] }),
  });
}

/**
 * Interface mode: the policy rules the config file's forwards add once the datapath runs (a run
 * adds them with each forward, recorded with the host setup); pool mode needs none.
 */
export function planConfigForwards(cfg: RunConfig, host: Resolved): HostStep[] {
  if (host.mode !== "interface") return [];
  return cfg.forwards.flatMap((f) => forwardSteps(cfg, host, f.proto, f.first, f.last));
}

/**
 * Interface mode: the policy rules one forward of outside ports first-last adds (`label`
 * "mapped": a NAT-PMP/PCP mapping's port beyond masq's range, the same rules).
 */
export function forwardSteps(
  cfg: RunConfig,
  host: Resolved,
  proto: "tcp" | "udp",
  first: number,
  last: number,
  label?: string,
): HostStep[] {
  return forwardRuleSteps({
    ...(label !== undefined ? { label } : {}),
    proto,
    first,
    last,
    outside: cfg.outside,
    inside: cfg.inside,
    publicAddress: host.publicAddresses[0],
    ports: cfg.ports,
  });
}

/**
 * The plan as `masq run --dry-run` prints it: each step in the order it is applied, the command
 * that applies it and the one that undoes it at exit (in reverse order); a value read at apply
 * time (a sysctl's, an MTU) shows as <the value before>.
 */
export function formatHostPlan(cfg: RunConfig, host: Resolved, steps: readonly HostStep[]): string[] {
  // Filled in before quoting, so the placeholder reads as a value, not as a quoted word.
  const prior = (argv: readonly string[]) =>
    formatArgv(fillPrior(argv, "PRIOR_VALUE")).replaceAll("PRIOR_VALUE", "<the value before>");
  const lines = [
    `masq run would open the TUNs ${cfg.tun} (inside) and ${cfg.tunOutside} (outside), ${host.mode} mode, public ${host.publicAddresses.join(", ") || `none yet (the rules naming it follow when ${cfg.outside} has one)`},`,
    `then apply these ${steps.length} steps in order (undone in reverse order at exit):`,
  ];
  for (const [i, s] of steps.entries()) {
    lines.push(`${String(i + 1).padStart(3)}. ${s.what}`);
    lines.push(`     apply: ${formatArgv(s.apply)}`);
    lines.push(`     undo:  ${s.undo.length > 0 ? prior(s.undo) : "(nothing to undo)"}`);
  }
  lines.push(
    "Nothing was changed. A start first removes what a masq run that is gone left behind (see masq cleanup --dry-run).",
  );
  return lines;
}
