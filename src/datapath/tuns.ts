// masq's two TUN devices, one per arrival side: the kernel gives a TUN reader only the IP
// packet, so the device it came through is what tells the engine whether it arrived on an inside
// interface or on the outside one. Opened, counted and closed together.
import { existsSync, readFileSync } from "node:fs";
import { cpuSetMask } from "../host/index.ts";
import type { TunDevice, TunIoSetting } from "../io/tun.ts";
import { SIDE_INSIDE, SIDE_OUTSIDE } from "../nat/engine.ts";
import type { DatapathPort } from "./datapath.ts";

export class TunPair {
  readonly inside: TunDevice;
  readonly outside: TunDevice;

  private constructor(inside: TunDevice, outside: TunDevice) {
    this.inside = inside;
    this.outside = outside;
  }

  /** Opens (creates) both devices; when the second fails, the first is closed again. */
  static async open(
    names: { inside: string; outside: string },
    vnetHdr: boolean,
    io: TunIoSetting = "syscalls",
  ): Promise<TunPair> {
    const { TunDevice } = await import("../io/tun.ts");
    const inside = TunDevice.open({ name: names.inside, vnetHdr, io });
    try {
      return new TunPair(inside, TunDevice.open({ name: names.outside, vnetHdr, io }));
    } catch (err) {
      inside.close();
      throw err;
    }
  }

  get devices(): TunDevice[] {
    return [this.inside, this.outside];
  }

  /** The datapath's view: each device with its side. */
  ports(): DatapathPort[] {
    return [
      { io: this.inside, side: SIDE_INSIDE },
      { io: this.outside, side: SIDE_OUTSIDE },
    ];
  }

  /**
   * Each device's counters by name. With `sysfs` (this namespace's /sys), also the packets the
   * kernel dropped because the device's queue was full (masq reading too slowly): the kernel
   * counts them only, as the device's tx_dropped (its transmit is masq's receive).
   */
  counters(sysfs: boolean): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const d of this.devices)
      out[d.name] = { ...d.stats(), ...(sysfs ? { kernelQueueDrops: kernelQueueDrops(d.name) } : {}) };
    return out;
  }

  close(): void {
    this.inside.close();
    this.outside.close();
  }
}

/** This network namespace's device names: /proc/net/dev follows the reader's namespace, /sys may not. */
function deviceNames(): Set<string> {
  const names = new Set<string>();
  for (const line of readFileSync("/proc/net/dev", "utf8").split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon > 0) names.add(line.slice(0, colon).trim());
  }
  return names;
}

/**
 * Waits (at most `timeoutMs`) until none of the devices `names` exists and returns those still
 * there. Closing a TUN's last fd does not remove it at once when an io_uring held the fd: the
 * ring's teardown runs in a kernel worker, so the device goes a moment after masq closed it. A
 * stop that returned before then would let the next `masq run` find the old device still there.
 */
export async function waitForDevicesGone(names: readonly string[], timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const present = deviceNames();
    const left = names.filter((n) => present.has(n));
    if (left.length === 0 || Date.now() >= deadline) return left;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Packets the kernel dropped because device `name`'s queue was full (masq reading too slowly):
 * its tx_dropped, since the device's transmit is masq's receive. Read from this namespace's /sys.
 */
export function kernelQueueDrops(name: string): number {
  return Number(readFileSync(`/sys/class/net/${name}/statistics/tx_dropped`, "utf8"));
}

/** The devices' counters added up, counter by counter. */
export function sumCounters(perDevice: Record<string, Record<string, number>>): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const counters of Object.values(perDevice))
    for (const [k, v] of Object.entries(counters)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}

/**
 * The RPS mask for the TUNs over `cpus` (undefined: RPS off, see cpu-placement.ts); `skipped`
 * says why it cannot be set.
 */
export function rpsMaskFor(
  cpus: readonly number[] | undefined,
  tuns: readonly string[],
  sysfsOurs: boolean,
): string | undefined | { skipped: string } {
  if (cpus === undefined) return undefined;
  if (!sysfsOurs)
    return {
      skipped: "/sys shows another network namespace (mount sysfs in this one, as `ip netns exec` does)",
    };
  for (const tun of tuns) {
    const file = `/sys/class/net/${tun}/queues/rx-0/rps_cpus`;
    if (!existsSync(file)) return { skipped: `the kernel has no ${file}` };
  }
  return cpuSetMask(cpus);
}
