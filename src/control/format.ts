// Human-readable output of the client commands (tables like conntrack -L, counters).
import type { EngineStats, FlowView, PinView } from "../nat/view.ts";
import type { RuleHits } from "../policy/rules.ts";
import type { ForwardView } from "../portmap/forwards.ts";
import type { ReloadStats } from "./reload.ts";

export interface ConnsReply {
  /** Flows in the table. */
  total: number;
  /** Flows that matched the listing's filters (all of them when it had none). */
  matched?: number;
  /** The matching flows, newest activity first; at most the listing's limit. */
  flows: FlowView[];
  /** Pinned mappings (forwards, NAT-PMP/PCP mappings, ALG expectations), whatever their origin. */
  pins?: PinView[];
}

export interface StatsReply {
  uptimeSec: number;
  mode: string;
  publicAddresses: string[];
  /** The port allocators' seed: `masq replay --port-seed` reproduces this run's ports with it. */
  portSeed?: number;
  /** The CPU the packet loop is pinned to (absent: not pinned). */
  datapathCpu?: number;
  engine: EngineStats;
  datapath: Record<string, number>;
  /** The TUN devices' counters added up. */
  device: Record<string, number>;
  /** Each TUN device's counters, by name (the inside and the outside TUN). */
  devices?: Record<string, Record<string, number>>;
  /** Firewall rules in order with their hit counters. */
  firewall?: RuleHits[];
  /** NAT-PMP/PCP server counters, when it runs. */
  portmap?: Record<string, number>;
  /** UPnP IGD server counters, when it runs. */
  upnp?: Record<string, number>;
  /** IPv6 simple security (RFC 6092) counters, when `[ipv6] firewall` is on. */
  ipv6?: Record<string, number>;
  /** NAT event log counters (`[nat_log]`), when it runs: events, records sent, drops by reason. */
  natLog?: Record<string, number>;
  /** The control socket's streamed answers (connection listings): counts, longest chunk. */
  control?: Record<string, number>;
  /** Config reloads (masq reload, SIGHUP) since start, and the latest one. */
  reload?: ReloadStats;
  /** With several workers: each worker's CPU, flows and packets (the figures above add them up). */
  workers?: WorkerFigures[];
}

export interface WorkerFigures {
  worker: number;
  cpu?: number;
  flows: number;
  translatedOut: number;
  translatedIn: number;
  drops: number;
  datapath: Record<string, number>;
}

function ep(e: { addr: string; port: number }): string {
  // An IPv6 address (the IPv6 filter's pinholes) in brackets, so its port stands apart.
  return e.addr.includes(":") ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`;
}

/**
 * The width of each column: its longest cell. A loop, not `Math.max(...column)`: spreading the
 * cells of a large table as arguments overflows the call stack.
 */
function columnWidths(rows: readonly (readonly string[])[]): number[] {
  const widths: number[] = [];
  for (const r of rows)
    for (let i = 0; i < r.length; i++) if ((widths[i] ?? 0) < r[i].length) widths[i] = r[i].length;
  return widths;
}

/** Rows padded to `widths` (the last column unpadded), each ending in a newline. */
function formatRows(rows: readonly (readonly string[])[], widths: readonly number[]): string {
  let out = "";
  for (const r of rows) {
    let line = "";
    for (let i = 0; i < r.length; i++) line += i === r.length - 1 ? r[i] : `${r[i].padEnd(widths[i] ?? 0)}  `;
    out += `${line}\n`;
  }
  return out;
}

function table(rows: string[][]): string {
  return formatRows(rows, columnWidths(rows)).slice(0, -1);
}

/**
 * Text from a config file or a client (notes, rule names) as one printable line: control
 * characters (C0, DEL, C1: ANSI escapes, newlines) and the invisible line and bidirectional
 * controls are shown as escapes, so a note cannot rewrite the terminal or forge table rows.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const named = NAMED_ESCAPES[c];
    if (named) return named;
    const code = c.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: these are what it finds.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;
const NAMED_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** Pinned mappings: what keeps a mapping open without flows, and who asked for it. */
export function formatPins(pins: readonly PinView[]): string {
  const rows = [["PROTO", "INSIDE", "OUTSIDE", "REMOTE", "ORIGIN", "EXPIRES", "FLOWS", "NOTE"]];
  for (const p of pins)
    rows.push([
      p.protocol,
      ep(p.inside),
      ep(p.outside),
      p.remote,
      p.origin,
      p.expiresInSec === null ? "never" : `${p.expiresInSec}s`,
      String(p.flows),
      printable(p.note),
    ]);
  return `${table(rows)}\n${pins.length} mapping${pins.length === 1 ? "" : "s"} pinned\n`;
}

export function formatStats(s: StatsReply): string {
  const e = s.engine;
  const lines = [
    `mode ${s.mode}, public ${s.publicAddresses.join(", ") || "none (the outside interface has no address)"}, up ${s.uptimeSec}s`,
    `flows ${e.flows}/${e.capacity.flows}  mappings ${e.mappings}/${e.capacity.mappings}  hosts ${e.hosts}/${e.capacity.hosts}  held fragments ${e.heldFragments}  (${e.bytesPerFlow} bytes per flow)`,
    "",
    "events:",
  ];
  const counters = Object.entries(e.counters);
  for (const [k, v] of counters.filter(([k]) => !k.startsWith("drop_"))) lines.push(`  ${k.padEnd(28)} ${v}`);
  lines.push("drops:");
  for (const [k, v] of counters.filter(([k]) => k.startsWith("drop_")))
    lines.push(`  ${k.slice(5).padEnd(28)} ${v}`);
  if (s.firewall && s.firewall.length > 0) {
    lines.push("firewall rules (hits):");
    for (const r of s.firewall)
      lines.push(
        `  ${String(r.index).padStart(3)}. ${printable(r.name).padEnd(40)} ${r.action.padEnd(7)} ${r.hits}`,
      );
  }
  lines.push("datapath:");
  for (const [k, v] of Object.entries(s.datapath)) lines.push(`  ${k.padEnd(28)} ${v}`);
  if (s.workers && s.workers.length > 0) {
    lines.push("workers (each its own queue of both TUNs, its hosts and its slice of the ports):");
    for (const w of s.workers)
      lines.push(
        `  ${String(w.worker).padStart(3)}  ${w.cpu === undefined ? "any CPU" : `CPU ${w.cpu}`}  flows ${w.flows}  out ${w.translatedOut}  in ${w.translatedIn}  drops ${w.drops}  packets ${w.datapath.packets ?? 0}`,
      );
  }
  const devices = s.devices && Object.keys(s.devices).length > 0 ? s.devices : { "": s.device };
  for (const [name, counters] of Object.entries(devices)) {
    if (Object.keys(counters).length === 0) continue;
    lines.push(name === "" ? "device:" : `device ${name}:`);
    for (const [k, v] of Object.entries(counters)) lines.push(`  ${k.padEnd(28)} ${v}`);
  }
  if (s.portmap) {
    lines.push("port mapping (NAT-PMP/PCP):");
    for (const [k, v] of Object.entries(s.portmap)) lines.push(`  ${k.padEnd(28)} ${v}`);
  }
  if (s.upnp) {
    lines.push("port mapping (UPnP IGD):");
    for (const [k, v] of Object.entries(s.upnp)) lines.push(`  ${k.padEnd(28)} ${v}`);
  }
  if (s.ipv6) {
    lines.push("IPv6 firewall (RFC 6092):");
    for (const [k, v] of Object.entries(s.ipv6)) lines.push(`  ${k.padEnd(28)} ${v}`);
  }
  if (s.natLog) {
    lines.push("NAT event log:");
    for (const [k, v] of Object.entries(s.natLog)) lines.push(`  ${k.padEnd(28)} ${v}`);
  }
  if (s.reload) {
    const r = s.reload;
    lines.push(`reloads: ${r.ok} ok, ${r.refused} refused, ${r.failed} failed`);
    if (r.last)
      lines.push(
        `  latest ${new Date(r.last.atMs).toISOString()} ${r.last.result}: ${printable(r.last.message)}`,
      );
  }
  if (s.control) {
    lines.push("control socket (listings):");
    for (const [k, v] of Object.entries(s.control)) lines.push(`  ${k.padEnd(28)} ${v}`);
  }
  return `${lines.join("\n")}\n`;
}

export interface ForwardsReply {
  forwards: ForwardView[];
  /** Every pinned mapping (forwards' ports, NAT-PMP/PCP mappings, ALG expectations). */
  pins: PinView[];
  /** Where the runtime forwards (SOURCE runtime) are kept across restarts. */
  stateFile?: string;
}

/** `masq forward list`: the forwards, then every pinned mapping with its origin. */
export function formatForwards(reply: ForwardsReply): string {
  let out = "";
  if (reply.forwards.length === 0) out += "no forwards\n";
  else {
    const rows = [["ID", "PROTO", "OUTSIDE", "INSIDE", "REMOTE", "SOURCE", "FLOWS", "NOTE"]];
    for (const f of reply.forwards)
      rows.push([
        String(f.id),
        f.protocol,
        f.outside,
        f.inside,
        f.remote,
        f.source,
        String(f.flows),
        printable(f.note),
      ]);
    out += `${table(rows)}\n`;
  }
  if (reply.stateFile) out += `runtime forwards are kept in ${reply.stateFile}\n`;
  if (reply.pins.length > 0) out += `\nmappings:\n${formatPins(reply.pins)}`;
  return out;
}
