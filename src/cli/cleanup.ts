// `masq cleanup`: removes what a masq that is no longer running left on this host (network
// namespace): exactly what its state file recorded (sysctls restored too), and what is
// recognisably masq's but no record covers (a record lost or corrupt). `--dry-run` prints it.
import { existsSync, rmSync } from "node:fs";
import { defaultRunConfig, parseConfigText, type RunFlags, readText } from "../control/config.ts";
import { checkAddress } from "../control/config-addresses.ts";
import { ConfigError } from "../control/config-error.ts";
import { IFNAME, resolveOutsideTun } from "../control/interface-names.ts";
import { snapshotFileFor } from "../control/keep-state.ts";
import {
  assertRoot,
  cleanLeftovers,
  currentNetnsName,
  defaultStateFile,
  expandPrefix,
  type Footprint,
  formatArgv,
  type HostLogger,
  parsePrefix,
  planCleanup,
  removeOrphanStateFiles,
} from "../host/index.ts";

export type CleanupFlags = Pick<RunFlags, "config" | "tun" | "tunOutside" | "outside" | "address"> & {
  dryRun?: boolean;
};

/** What `masq cleanup` needs to know: masq's TUN names, its state directory, the pool. */
export interface CleanupConfig {
  tun: string;
  tunOutside: string;
  stateDir: string;
  /** Pool mode: the outside interface and the pool (its proxy ARP entries are masq's). */
  outside?: string;
  addresses: string[];
}

/** Like resolveRunConfig, for `masq cleanup`: the same file and flags, no interface required. */
export function resolveCleanupConfig(
  flags: CleanupFlags,
  readFile: (p: string) => string = readText,
): CleanupConfig {
  const c = defaultRunConfig();
  let tunOutside: { name: string; where: string } | undefined;
  let outside: string | undefined;
  if (flags.config) {
    const f = parseConfigText(readFile(flags.config), flags.config);
    if (f.tun !== undefined) c.tun = f.tun;
    if (f.tun_outside !== undefined)
      tunOutside = { name: f.tun_outside, where: `${flags.config}: tun_outside` };
    if (f.state_dir !== undefined) c.stateDir = f.state_dir;
    if (f.outside !== undefined) outside = f.outside;
    if (f.addresses !== undefined)
      c.addresses = f.addresses.map((a) => checkAddress(a, `${flags.config}: addresses`));
  }
  if (flags.tun !== undefined) c.tun = flags.tun;
  if (!IFNAME.test(c.tun))
    throw new ConfigError("--tun", `${JSON.stringify(c.tun)} is not an interface name`);
  if (flags.tunOutside !== undefined) tunOutside = { name: flags.tunOutside, where: "--tun-outside" };
  if (flags.outside !== undefined) outside = flags.outside;
  if (flags.address !== undefined && flags.address.length > 0)
    c.addresses = flags.address.flatMap((s) => s.split(",")).map((a) => checkAddress(a, "--address"));
  return {
    tun: c.tun,
    tunOutside: resolveOutsideTun(c.tun, tunOutside),
    stateDir: c.stateDir,
    ...(outside !== undefined ? { outside } : {}),
    addresses: c.addresses,
  };
}

export function cleanupFootprint(cfg: CleanupConfig): Footprint {
  return {
    tuns: [cfg.tun, cfg.tunOutside],
    ...(cfg.outside !== undefined ? { outside: cfg.outside } : {}),
    pool: cfg.addresses.flatMap((a) => expandPrefix(parsePrefix(a))),
  };
}

export async function runCleanup(
  flags: CleanupFlags,
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
): Promise<number> {
  const cfg = resolveCleanupConfig(flags);
  assertRoot();
  const netns = currentNetnsName();
  const stateFile = defaultStateFile(cfg.tun, { dir: cfg.stateDir, ...(netns ? { netns } : {}) });
  const footprint = cleanupFootprint(cfg);

  if (flags.dryRun) {
    const plan = await planCleanup(stateFile, { footprint });
    if (plan.corrupt)
      out(`the state file ${stateFile} is corrupt: it would be kept aside (${stateFile}.corrupt-<time>)`);
    if (plan.recorded.length > 0) {
      out(`would undo what ${stateFile} records:`);
      for (const argv of plan.recorded) out(`  ${formatArgv(argv)}`);
    }
    if (plan.found.length > 0) {
      out("would remove what is masq's on the host and no record covers:");
      for (const s of plan.found) out(`  ${formatArgv(s.apply)}`);
    }
    if (plan.recorded.length + plan.found.length === 0 && !plan.corrupt) out("nothing of masq's to remove");
    return 0;
  }

  const log: HostLogger = {
    info() {},
    warn(obj, msg) {
      const keptAs = (obj as { keptAs?: string }).keptAs;
      if (keptAs) out(`${msg}: ${keptAs}`);
    },
  };
  removeOrphanStateFiles(cfg.stateDir);
  const report = await cleanLeftovers(stateFile, { footprint, log });
  // The state `masq stop --keep-state` kept goes with the setup it needed.
  const snapshot = snapshotFileFor(stateFile);
  if (existsSync(snapshot)) {
    rmSync(snapshot, { force: true });
    out(`removed: the snapshot ${snapshot} kept by masq stop --keep-state`);
  }
  if (!report) {
    out("nothing of masq's to remove");
    return 0;
  }
  for (const what of report.undone) out(`removed: ${what}`);
  for (const what of report.gone) out(`already gone: ${what}`);
  for (const f of report.failed) out(`failed: ${f.what}: ${f.error}`);
  return report.failed.length > 0 ? 1 : 0;
}
