// The packet loop's keys of the config file and their flags: `workers`, `datapath_cpu`,
// `datapath_priority`, `datapath_io` and `busy_poll_us` (--datapath-cpu, --datapath-priority,
// --datapath-io, --busy-poll), checked apart from config.ts so that file stays the list of sections.
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
  return parseChoice(DATAPATH_PRIORITIES, text, where);
}

/** A flag's value that must be one of `choices`, or the error naming `where`. */
function parseChoice<T extends string>(choices: readonly T[], text: string, where: string): T {
  const c = choices.find((x) => x === text);
  if (c === undefined)
    throw new ConfigError(where, `${JSON.stringify(text)} must be one of ${choices.join(", ")}`);
  return c;
}

/**
 * `datapath_io`: how the loop's batches reach the TUN. "uring": through an io_uring per device
 * and thread, one io_uring_enter per round of reads or writes; "syscalls": one read() or write()
 * per packet; "auto" (the default): io_uring where the ring can be set up, else the syscalls.
 */
export const DATAPATH_IOS = ["auto", "uring", "syscalls"] as const;
export type DatapathIo = (typeof DATAPATH_IOS)[number];

/** `--datapath-io auto|uring|syscalls`. */
export function parseDatapathIo(text: string, where: string): DatapathIo {
  return parseChoice(DATAPATH_IOS, text, where);
}

/** An explicit `datapath_io = "uring"` the devices could not follow: the error naming `where`. */
export function checkDatapathIo(
  setting: DatapathIo,
  devices: ReadonlyArray<{ ioFallback: string | undefined }>,
  where = "datapath_io",
): void {
  const fallback = devices.find((d) => d.ioFallback !== undefined)?.ioFallback;
  if (setting === "uring" && fallback !== undefined)
    throw new ConfigError(where, `"uring" cannot be used here: ${fallback}`);
}

/**
 * What the start-up summary says of the devices' I/O: "io_uring", "syscalls", or "syscalls
 * (io_uring unavailable: …)" when "auto" fell back.
 */
export function datapathIoSummary(
  devices: ReadonlyArray<{ io: string; ioFallback: string | undefined }>,
): string {
  const fallback = devices.find((d) => d.ioFallback !== undefined)?.ioFallback;
  if (fallback !== undefined) return `syscalls (io_uring unavailable: ${fallback})`;
  return devices.every((d) => d.io === "uring") ? "io_uring" : "syscalls";
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
