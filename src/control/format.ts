// Human-readable output of the client commands (tables like conntrack -L, counters).
import type { EngineStats, FlowView } from "../nat/view.ts";

export interface ConnsReply {
  total: number;
  flows: FlowView[];
}

export interface StatsReply {
  uptimeSec: number;
  mode: string;
  publicAddresses: string[];
  engine: EngineStats;
  datapath: Record<string, number>;
  device: Record<string, number>;
}

function ep(e: { addr: string; port: number }): string {
  return `${e.addr}:${e.port}`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  "))
    .join("\n");
}

export function formatConns(reply: ConnsReply): string {
  if (reply.flows.length === 0) return `no connections (${reply.total} in the table)\n`;
  const rows = [
    [
      "PROTO",
      "INSIDE",
      "OUTSIDE",
      "REMOTE",
      "STATE",
      "ORIGIN",
      "IDLE",
      "EXPIRES",
      "PKTS OUT/IN",
      "BYTES OUT/IN",
    ],
  ];
  for (const f of reply.flows)
    rows.push([
      f.protocol,
      ep(f.inside),
      ep(f.outside),
      ep(f.remote),
      f.state,
      f.origin,
      `${f.idleSec}s`,
      `${f.expiresInSec}s`,
      `${f.packetsOut}/${f.packetsIn}`,
      `${f.bytesOut}/${f.bytesIn}`,
    ]);
  const more = reply.total > reply.flows.length ? ` (showing ${reply.flows.length})` : "";
  return `${table(rows)}\n${reply.total} connection${reply.total === 1 ? "" : "s"}${more}\n`;
}

export function formatStats(s: StatsReply): string {
  const e = s.engine;
  const lines = [
    `mode ${s.mode}, public ${s.publicAddresses.join(", ")}, up ${s.uptimeSec}s`,
    `flows ${e.flows}/${e.capacity.flows}  mappings ${e.mappings}/${e.capacity.mappings}  hosts ${e.hosts}/${e.capacity.hosts}  held fragments ${e.heldFragments}  (${e.bytesPerFlow} bytes per flow)`,
    "",
    "events:",
  ];
  const counters = Object.entries(e.counters);
  for (const [k, v] of counters.filter(([k]) => !k.startsWith("drop_"))) lines.push(`  ${k.padEnd(28)} ${v}`);
  lines.push("drops:");
  for (const [k, v] of counters.filter(([k]) => k.startsWith("drop_")))
    lines.push(`  ${k.slice(5).padEnd(28)} ${v}`);
  lines.push("datapath:");
  for (const [k, v] of Object.entries(s.datapath)) lines.push(`  ${k.padEnd(28)} ${v}`);
  if (Object.keys(s.device).length > 0) {
    lines.push("device:");
    for (const [k, v] of Object.entries(s.device)) lines.push(`  ${k.padEnd(28)} ${v}`);
  }
  return `${lines.join("\n")}\n`;
}
