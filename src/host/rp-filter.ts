// Reverse-path filtering (RFC 3704) while masq runs, without weakening the host.
//
// masq's TUNs need rp_filter off: a packet masq writes back arrives on a TUN whose reverse path
// is elsewhere (the outside TUN carries the replies of what the inside TUN sent), and an
// address-less device fails even the loose check. The kernel applies max(all, <device>), so
// the TUNs are only off when `all` is 0. Setting all=0 alone would silently turn a host's strict
// `all = 1` off on every interface; so when `all` is on, its value is first carried onto each
// other interface's own setting (and `default`, for interfaces created while masq runs) where
// that is lower. Every interface then keeps the value it had in effect, max(all, dev), and the
// undo restores each one exactly (sysctl steps record their prior values).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./exec.ts";
import { type HostStep, sysctlKey, sysctlStep } from "./steps.ts";

/** The rp_filter settings in force: `all`, `default` and each interface's own. */
export interface RpFilterState {
  all: number;
  default: number;
  devices: Record<string, number>;
}

const key = (dev: string) => sysctlKey("net", "ipv4", "conf", dev, "rp_filter");

/**
 * The steps that turn rp_filter off on `tuns` and on `all` while every other interface keeps
 * its effective value. Without `state` (not read), only the TUNs and `all` are set, as before.
 */
export function rpFilterSteps(tuns: readonly string[], state?: RpFilterState): HostStep[] {
  const steps = tuns.map((t) => sysctlStep(key(t), "0"));
  const all = state?.all ?? 0;
  if (state && all > 0) {
    const carry = (dev: string, value: number) => {
      if (value >= all) return;
      steps.push({
        ...sysctlStep(key(dev), String(all)),
        what: `keep rp_filter ${all} on ${dev} (net.ipv4.conf.all.rp_filter=${all} was in effect there)`,
      });
    };
    for (const dev of Object.keys(state.devices).sort())
      if (!tuns.includes(dev)) carry(dev, state.devices[dev]);
    carry("default", state.default);
  }
  // Last: only now does `all` stop covering the interfaces.
  steps.push(sysctlStep(key("all"), "0"));
  return steps;
}

/**
 * Reads the rp_filter settings of this process's network namespace, or of a named one (through a
 * helper process inside it: /proc/sys/net shows the reader's namespace).
 */
export async function readRpFilterState(
  where: { netns?: string } = {},
  confDir = "/proc/sys/net/ipv4/conf",
): Promise<RpFilterState> {
  const values = new Map<string, number>();
  if (where.netns) {
    // grep prints "<file>:<value>" for every file it reads.
    const out = await run(["sh", "-c", `grep -H . ${confDir}/*/rp_filter`], { netns: where.netns });
    for (const line of out.split("\n")) {
      const m = /\/([^/]+)\/rp_filter:(\d+)$/.exec(line);
      if (m) values.set(m[1], Number(m[2]));
    }
  } else {
    for (const dev of readdirSync(confDir)) {
      try {
        values.set(dev, Number(readFileSync(join(confDir, dev, "rp_filter"), "utf8").trim()));
      } catch {
        // The interface went away while we looked: nothing to keep.
      }
    }
  }
  const all = values.get("all");
  const dflt = values.get("default");
  if (all === undefined || dflt === undefined) throw new Error(`cannot read rp_filter under ${confDir}`);
  values.delete("all");
  values.delete("default");
  return { all, default: dflt, devices: Object.fromEntries(values) };
}
