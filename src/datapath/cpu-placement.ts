// Where the packet loop runs, and where the kernel does its share of the work on the packets masq
// writes. A TUN write carries out, in the writer's context, most of the kernel's work on a
// forwarded packet: routing, the outside device's transmit and, on a local veth, the receiver's
// protocol processing. RPS hands that work to other CPUs by flow; but when the packet loop may run
// on any of the CPUs RPS uses, half of it still lands on the loop's own CPU, and the loop then
// carries the forwarding of every flow. Measured here (2 vCPUs, 500 parallel HTTP downloads): the
// loop at 80-95% CPU, TCP round trips of 240 ms behind the full TUN queues, 0.05-0.1x the
// kernel's own NAT; with the loop on one CPU and RPS on the other, 15 ms and 0.5-0.8x. So by
// default the loop is pinned to one CPU and RPS spreads the kernel's work over the others.
import { ConfigError } from "../control/config-error.ts";
import type { DatapathCpuSetting, DatapathPriority } from "../control/datapath-config.ts";

export interface CpuPlacement {
  /** The CPU the packet loop's thread is pinned to; undefined: it is not pinned. */
  datapathCpu?: number;
  /** The CPUs RPS spreads the kernel's work on written packets over; undefined: RPS stays off. */
  rpsCpus?: number[];
}

/**
 * The placement for `setting` among the CPUs this process may use (`allowed`), with RPS when
 * `rps` is asked for. Auto pins the loop to the last allowed CPU (the first ones are where
 * interrupts and other work tend to land) and gives RPS the rest; off leaves the loop free and
 * gives RPS every CPU, as masq did before it pinned; a CPU number pins there.
 */
export function placeDatapath(
  setting: DatapathCpuSetting,
  allowed: readonly number[],
  rps: boolean,
): CpuPlacement {
  const cpus = [...new Set(allowed)].sort((a, b) => a - b);
  if (setting === "off") return rps && cpus.length >= 2 ? { rpsCpus: cpus } : {};
  if (setting === "auto" && cpus.length < 2) return {};
  const pin = setting === "auto" ? cpus[cpus.length - 1] : setting;
  if (!cpus.includes(pin))
    throw new ConfigError(
      "datapath_cpu",
      `CPU ${pin} is not one this process may run on (allowed: ${cpus.join(", ")})`,
    );
  const others = cpus.filter((c) => c !== pin);
  return rps && others.length > 0 ? { datapathCpu: pin, rpsCpus: others } : { datapathCpu: pin };
}

/** The SCHED_FIFO priority of a "realtime" loop: the lowest, below the kernel's own RT threads. */
export const DATAPATH_RT_PRIORITY = 1;

/** What applyDatapathPriority needs of the addon (native/tun.cc). */
export interface PriorityAddon {
  setThreadRealtime(priority: number): number;
}

/**
 * Puts the calling thread (the packet loop's) under the scheduling `priority` asks for. The
 * kernel's own NAT forwards in softirq, which preempts every task; a loop under the ordinary
 * scheduler waits behind whatever else runs on its CPU (wrk and lighttpd in the bench, anything
 * on a real gateway), and the TUN queue overflows meanwhile while masq shows CPU to spare. Under
 * SCHED_FIFO a wake-up preempts ordinary work at once; the loop sleeps when the devices are
 * empty, and the kernel's RT throttling still leaves others their share. Returns what was done,
 * for the start-up summary: a refusal (no CAP_SYS_NICE) leaves the loop at normal priority.
 */
export function applyDatapathPriority(priority: DatapathPriority, addon: PriorityAddon): string {
  if (priority === "normal") return "normal priority";
  const err = addon.setThreadRealtime(DATAPATH_RT_PRIORITY);
  if (err === 0) return `SCHED_FIFO ${DATAPATH_RT_PRIORITY}`;
  return `normal priority (SCHED_FIFO refused: errno ${err}${err === 1 ? ", EPERM: needs CAP_SYS_NICE" : ""})`;
}
