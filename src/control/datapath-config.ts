// The packet loop's keys of the config file and their flags: `workers`, `datapath_cpu` and
// `busy_poll_us` (--datapath-cpu, --busy-poll), checked apart from config.ts so that file stays
// the list of sections.
import { ConfigError } from "./config-error.ts";
import { parseWorkers } from "./workers-config.ts";

/** The longest busy poll: beyond a few ms it is a spinning CPU, not a shorter wake-up. */
export const MAX_BUSY_POLL_US = 10_000;

/** `workers` / `--workers`, or the error naming `where`. */
export function checkWorkers(value: string | number, where: string): number {
  const n = parseWorkers(value);
  if (typeof n === "string") throw new ConfigError(where, n);
  return n;
}

/**
 * `datapath_priority`: the packet loop's thread under SCHED_FIFO ("realtime", the default), so a
 * wake-up preempts ordinary work on its CPU as the kernel's own forwarding (softirq) does, or
 * under the ordinary scheduler with everything else ("normal").
 */
export const DATAPATH_PRIORITIES = ["realtime", "normal"] as const;
export type DatapathPriority = (typeof DATAPATH_PRIORITIES)[number];

/** `--datapath-priority realtime|normal`. */
export function parseDatapathPriority(text: string, where: string): DatapathPriority {
  const p = DATAPATH_PRIORITIES.find((x) => x === text);
  if (p === undefined)
    throw new ConfigError(where, `${JSON.stringify(text)} must be one of ${DATAPATH_PRIORITIES.join(", ")}`);
  return p;
}

/** `datapath_cpu`: "auto" (pinned when there are 2 or more CPUs), "off", or a CPU number. */
export type DatapathCpuSetting = "auto" | "off" | number;

/** "auto", "off" or a CPU number, from the config file or the command line. */
export function parseDatapathCpu(value: string | number, where: string): DatapathCpuSetting {
  if (value === "auto" || value === "off") return value;
  const n = typeof value === "number" ? value : /^\d{1,4}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 8191)
    throw new ConfigError(where, `${JSON.stringify(value)} must be "auto", "off" or a CPU number`);
  return n;
}

/** `--busy-poll <us>`: 0 up to MAX_BUSY_POLL_US microseconds. */
export function parseBusyPoll(text: string, where: string): number {
  const us = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(us <= MAX_BUSY_POLL_US))
    throw new ConfigError(where, `${JSON.stringify(text)} must be 0-${MAX_BUSY_POLL_US} microseconds`);
  return us;
}
