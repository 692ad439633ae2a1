// CPU use of the processes around a measurement, from /proc: the proof that a figure is the
// path's and not its traffic generator's (issue 13: a generator at its core's limit measures
// itself). A process is as fast as its busiest thread, so each process reports its busiest
// thread next to its total. The machine's own busy time is shown too: the bench shares its
// CPUs with whatever else runs.
import { readdirSync, readFileSync } from "node:fs";

/** Above this share of one core a generator may be what limits the figure. */
export const GENERATOR_LIMIT_PCT = 90;
/** Kernel clock ticks per second of the times in /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const TICKS = 100;
const POLL_MS = 200;

/** The fields of /proc/PID/stat after the command name (state first); null once the pid is gone. */
export function procStat(pid: number, tid?: number): string[] | null {
  try {
    const stat = readFileSync(
      tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`,
      "utf8",
    );
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** CPU seconds (user + system: stat fields 14 and 15) a process has used; null if unreadable. */
export function cpuSeconds(pid: number, tid?: number): number | null {
  const f = procStat(pid, tid);
  return f ? (Number(f[11]) + Number(f[12])) / TICKS : null;
}

/** True once `pid` has exited (a zombie not yet reaped counts) or is gone. */
export function exitedPid(pid: number): boolean {
  const f = procStat(pid);
  return f === null || f[0] === "Z";
}

export interface CpuUse {
  /** The whole process, % of one core (above 100 with several threads busy). */
  totalPct: number;
  /** Its busiest thread, % of one core: at 100 that thread is the limit. */
  busiestThreadPct: number;
  /** Over how long, seconds. */
  seconds: number;
}

interface Sample {
  t: number;
  total: number;
  threads: Map<number, number>;
}

function sample(pid: number): Sample | null {
  const t = performance.now();
  const total = cpuSeconds(pid);
  if (total === null) return null;
  const threads = new Map<number, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  for (const tid of tids) {
    const s = cpuSeconds(pid, Number(tid));
    if (s !== null) threads.set(Number(tid), s);
  }
  return { t, total, threads };
}

interface Ticks {
  busy: number;
  all: number;
}

/** Busy and total jiffies of one /proc/stat "cpu" line (softirq time counts as busy). */
function ticksOf(line: string): Ticks {
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const all = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = v[3] + v[4]; // idle + iowait
  return { busy: all - idle, all };
}

/** All CPUs together (/proc/stat's first line), then each CPU (cpu0, cpu1 …). */
function machineTicks(): Ticks[] {
  return readFileSync("/proc/stat", "utf8")
    .split("\n")
    .filter((l) => l.startsWith("cpu"))
    .map(ticksOf);
}

function busyPct(a: Ticks | undefined, b: Ticks | undefined): number {
  const all = a && b ? b.all - a.all : 0;
  return a && b && all > 0 ? ((b.busy - a.busy) / all) * 100 : 0;
}

/** A thread's CPU time and the time when it was first seen. */
interface ThreadStart {
  t: number;
  secs: number;
}

function use(first: Sample, last: Sample, threadStart: ReadonlyMap<number, ThreadStart>): CpuUse | null {
  const secs = (last.t - first.t) / 1000;
  if (!(secs > 0)) return null;
  let busiestPct = 0;
  for (const [tid, end] of last.threads) {
    const start = threadStart.get(tid);
    const span = start ? (last.t - start.t) / 1000 : 0;
    // Over its own span; a thread seen only at the very end has too few ticks to tell.
    if (start && span >= secs / 2) busiestPct = Math.max(busiestPct, ((end - start.secs) / span) * 100);
  }
  return { totalPct: ((last.total - first.total) / secs) * 100, busiestThreadPct: busiestPct, seconds: secs };
}

export interface CpuReport {
  procs: Record<string, CpuUse | null>;
  machineBusyPct: number;
  /**
   * Each CPU's busy share, softirq included: the kernel's packet work shows here and in no
   * process's figure (a generator's core at 100% with the generator at 60% is still full).
   */
  perCpuBusyPct: number[];
}

/**
 * Samples the CPU time of some processes every 200 ms while a measurement runs. Each process's
 * figure spans its first to its last readable sample, so one that exits early (the generator,
 * when its run ends) is measured over its own run.
 */
export class CpuWatch {
  private readonly first = new Map<string, Sample>();
  private readonly last = new Map<string, Sample>();
  /**
   * Per process, each thread's CPU time when first seen: a thread born during the window (wrk
   * starts its threads after the first sample) is measured from then.
   */
  private readonly threadStart = new Map<string, Map<number, ThreadStart>>();
  private readonly timer: NodeJS.Timeout;
  private readonly machine0 = machineTicks();
  private machine1 = this.machine0;

  constructor(private readonly pids: Readonly<Record<string, number>>) {
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  private poll(): void {
    for (const [name, pid] of Object.entries(this.pids)) {
      if (pid <= 0 || exitedPid(pid)) continue;
      const s = sample(pid);
      if (!s) continue;
      if (!this.first.has(name)) this.first.set(name, s);
      this.last.set(name, s);
      const starts = this.threadStart.get(name) ?? new Map<number, ThreadStart>();
      this.threadStart.set(name, starts);
      for (const [tid, secs] of s.threads) if (!starts.has(tid)) starts.set(tid, { t: s.t, secs });
    }
    this.machine1 = machineTicks();
  }

  /** Stops sampling (one last sample first); each process's use, null where not measurable. */
  stop(): CpuReport {
    this.poll();
    clearInterval(this.timer);
    const procs: Record<string, CpuUse | null> = {};
    for (const name of Object.keys(this.pids)) {
      const a = this.first.get(name);
      const b = this.last.get(name);
      procs[name] = a && b ? use(a, b, this.threadStart.get(name) ?? new Map()) : null;
    }
    const [m0, ...c0] = this.machine0;
    const [m1, ...c1] = this.machine1;
    return { procs, machineBusyPct: busyPct(m0, m1), perCpuBusyPct: c0.map((a, i) => busyPct(a, c1[i])) };
  }
}

/** "wrk 143% (busiest thread 78%)": a process's CPU as printed. */
export function cpuText(name: string, u: CpuUse | null): string {
  if (!u) return `${name} ?% CPU`;
  const threads = Math.abs(u.totalPct - u.busiestThreadPct) >= 1;
  return `${name} ${u.totalPct.toFixed(0)}%${threads ? ` (busiest thread ${u.busiestThreadPct.toFixed(0)}%)` : ""}`;
}

/** The load generators (client and server) whose busiest thread is above the limit. */
export function busyGenerators(cpu: CpuReport, generators: readonly string[]): string[] {
  return generators.filter((g) => (cpu.procs[g]?.busiestThreadPct ?? 0) > GENERATOR_LIMIT_PCT);
}

/** "CPU wrk 143% (busiest thread 78%), lighttpd 61%, masq 99%; machine 100% busy (CPU 0 100%, CPU 1 99%)". */
export function cpuReportText(cpu: CpuReport): string {
  const procs = Object.entries(cpu.procs).map(([name, u]) => cpuText(name, u));
  return `CPU ${procs.join(", ")}; machine ${cpu.machineBusyPct.toFixed(0)}% busy (${perCpuText(cpu.perCpuBusyPct)})`;
}

/** "CPU 0 100%, CPU 1 43%". */
export function perCpuText(pcts: readonly number[]): string {
  return pcts.map((p, i) => `CPU ${i} ${p.toFixed(0)}%`).join(", ");
}

/** Each CPU's busy share over a span, softirq included (see CpuReport.perCpuBusyPct). */
export class CpuBusy {
  private readonly t0 = machineTicks();

  stop(): number[] {
    const [, ...c0] = this.t0;
    const [, ...c1] = machineTicks();
    return c0.map((a, i) => busyPct(a, c1[i]));
  }
}
