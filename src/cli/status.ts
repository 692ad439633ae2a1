// `masq status`: one screen on a running masq, from two samples of its counters a moment apart
// (rates are the difference over the time between them, so masq keeps no rate of its own).
import type { StatsReply } from "../control/format.ts";

/** A stats reply; `workers` as a list (one entry per worker) or, from other daemons, a count. */
type StatusSample = Omit<StatsReply, "workers"> & { workers?: number | unknown[] };

function duration(sec: number): string {
  const d = Math.floor(sec / 86_400);
  const h = Math.floor((sec % 86_400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = Math.floor(sec % 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m ${s}s`;
  return m > 0 ? `${m}m ${s}s` : `${s}s`;
}

/** "12.3k" style: rates read at a glance. */
function compact(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

function rate(a: number | undefined, b: number | undefined, seconds: number): number {
  const d = (b ?? 0) - (a ?? 0);
  return seconds > 0 && d > 0 ? d / seconds : 0;
}

/** The number of workers a stats reply reports (1 when it says nothing: one packet loop). */
export function workerCount(s: StatusSample): number {
  const w = s.workers;
  if (typeof w === "number") return w;
  return Array.isArray(w) ? w.length : 1;
}

/** The status screen from samples `a` then `b`, taken `seconds` apart. */
export function formatStatus(a: StatusSample, b: StatusSample, seconds: number): string {
  const e = b.engine;
  const ca = a.engine.counters;
  const cb = e.counters;
  const pct = (n: number, of: number) => (of > 0 ? `${((100 * n) / of).toFixed(1)}%` : "-");
  const packets = rate(ca.packets, cb.packets, seconds);
  const engineDrops = rate(ca.dropped, cb.dropped, seconds);
  const queueDrops = rate(a.device.kernelQueueDrops, b.device.kernelQueueDrops, seconds);
  const bytes = rate(ca.bytes_in, cb.bytes_in, seconds) + rate(ca.bytes_out, cb.bytes_out, seconds);
  const workers = workerCount(b);
  const lines = [
    `masq      ${b.mode} mode, public ${b.publicAddresses.join(", ") || "none (the outside interface has no address)"}, up ${duration(b.uptimeSec)}`,
    `flows     ${e.flows} / ${e.capacity.flows} (${pct(e.flows, e.capacity.flows)}), mappings ${e.mappings} / ${e.capacity.mappings}, hosts ${e.hosts} / ${e.capacity.hosts}`,
    `packets   ${compact(packets)}/s (${compact((bytes * 8) / 1e6)} Mbit/s)`,
    `drops     ${compact(engineDrops + queueDrops)}/s (engine ${compact(engineDrops)}/s, TUN queues ${compact(queueDrops)}/s)`,
    `workers   ${workers}${workers === 1 && b.datapathCpu !== undefined ? ` (packet loop on CPU ${b.datapathCpu})` : ""}`,
  ];
  if (b.reload)
    lines.push(`reloads   ${b.reload.ok} ok, ${b.reload.refused} refused, ${b.reload.failed} failed`);
  lines.push(`(rates over ${seconds.toFixed(1)} s)`);
  return `${lines.join("\n")}\n`;
}
