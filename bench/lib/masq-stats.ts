// masq's own counters around a measurement (`masq stats --json` before and after): what explains
// a bad figure on the masq side. The kernel dropping at a full TUN queue (kernelQueueDrops,
// per device), the engine's drops by reason, how often a wake-up hit the read budget, and how
// many outside ports masq holds (its mappings) when the measurement ends.
import type { MasqProcess } from "../../src/lab/masq-process.ts";

export interface MasqCounters {
  /** Engine drops by reason ("host_port_quota" …), the engine's counters drop_<reason>. */
  drops: Record<string, number>;
  /** Per TUN device: packets the kernel dropped at its full queue. */
  queueDrops: Record<string, number>;
  rxWakeups: number;
  rxBudgetHits: number;
  /** Mappings held (all protocols): each holds one outside port of its protocol. */
  mappings: number;
  /** Mappings made: outside ports taken. */
  mappingsCreated: number;
  /**
   * Per TUN device: packets and bytes read (bytes per packet: how much the kernel coalesced), GSO
   * super-packets among them, and packets written and refused.
   */
  traffic: Record<string, DeviceTraffic>;
}

export interface DeviceTraffic {
  rxPackets: number;
  rxBytes: number;
  rxGso: number;
  txPackets: number;
  /** UDP super-packets written: datagrams of one flow merged (udp-coalesce.ts), all in txPackets. */
  txGsoUdp: number;
  txQueueFull: number;
}

const TRAFFIC_KEYS = [
  "rxPackets",
  "rxBytes",
  "rxGsoTcp",
  "rxGsoUdp",
  "txPackets",
  "txGsoUdp",
  "txQueueFull",
] as const;

/** The parts of `masq stats --json` read here; every field optional (the format may grow). */
interface StatsJson {
  engine?: { counters?: Record<string, number>; mappings?: number };
  device?: { rxWakeups?: number; rxBudgetHits?: number };
  devices?: Record<
    string,
    { kernelQueueDrops?: number } & Partial<Record<(typeof TRAFFIC_KEYS)[number], number>>
  >;
}

export async function masqCounters(masq: MasqProcess): Promise<MasqCounters> {
  const j = JSON.parse(await masq.cli(["stats", "--json"])) as StatsJson;
  const drops: Record<string, number> = {};
  for (const [k, v] of Object.entries(j.engine?.counters ?? {}))
    if (k.startsWith("drop_") && typeof v === "number") drops[k.slice(5)] = v;
  const queueDrops: Record<string, number> = {};
  const traffic: Record<string, DeviceTraffic> = {};
  for (const [dev, c] of Object.entries(j.devices ?? {})) {
    queueDrops[dev] = c.kernelQueueDrops ?? 0;
    traffic[dev] = {
      rxPackets: c.rxPackets ?? 0,
      rxBytes: c.rxBytes ?? 0,
      rxGso: (c.rxGsoTcp ?? 0) + (c.rxGsoUdp ?? 0),
      txPackets: c.txPackets ?? 0,
      txGsoUdp: c.txGsoUdp ?? 0,
      txQueueFull: c.txQueueFull ?? 0,
    };
  }
  return {
    drops,
    queueDrops,
    rxWakeups: j.device?.rxWakeups ?? 0,
    rxBudgetHits: j.device?.rxBudgetHits ?? 0,
    mappings: j.engine?.mappings ?? 0,
    mappingsCreated: j.engine?.counters?.mappings_created ?? 0,
    traffic,
  };
}

/** What changed from `a` to `b` (mappings: b's, a level, not a count of events). */
export function countersDelta(a: MasqCounters, b: MasqCounters): MasqCounters {
  const diff = (x: Record<string, number>, y: Record<string, number>) => {
    const o: Record<string, number> = {};
    for (const [k, v] of Object.entries(y)) if (v - (x[k] ?? 0) !== 0) o[k] = v - (x[k] ?? 0);
    return o;
  };
  return {
    drops: diff(a.drops, b.drops),
    queueDrops: Object.fromEntries(
      Object.entries(b.queueDrops).map(([k, v]) => [k, v - (a.queueDrops[k] ?? 0)]),
    ),
    rxWakeups: b.rxWakeups - a.rxWakeups,
    rxBudgetHits: b.rxBudgetHits - a.rxBudgetHits,
    mappings: b.mappings,
    mappingsCreated: b.mappingsCreated - a.mappingsCreated,
    traffic: Object.fromEntries(
      Object.entries(b.traffic).map(([dev, t]) => {
        const was = a.traffic[dev];
        const d = (k: keyof DeviceTraffic) => t[k] - (was?.[k] ?? 0);
        return [
          dev,
          {
            rxPackets: d("rxPackets"),
            rxBytes: d("rxBytes"),
            rxGso: d("rxGso"),
            txPackets: d("txPackets"),
            txGsoUdp: d("txGsoUdp"),
            txQueueFull: d("txQueueFull"),
          },
        ];
      }),
    ),
  };
}

/** One line: "kernelQueueDrops 18210 (masq0 0, masq0-out 18210), drops none, …". */
export function countersText(d: MasqCounters): string {
  const q = Object.entries(d.queueDrops);
  const queue = q.reduce((s, [, v]) => s + v, 0);
  const perDev = q.length > 1 ? ` (${q.map(([k, v]) => `${k} ${v}`).join(", ")})` : "";
  const drops = Object.entries(d.drops).map(([k, v]) => `${k} ${v}`);
  return [
    `kernelQueueDrops ${queue}${perDev}`,
    `drops ${drops.length ? drops.join(", ") : "none"}`,
    `read budget hit in ${d.rxBudgetHits} of ${d.rxWakeups} wake-ups`,
    `${d.mappingsCreated} outside ports taken, ${d.mappings} held at the end (mappings, all protocols)`,
    ...Object.entries(d.traffic).map(
      ([dev, t]) =>
        `${dev} read ${t.rxPackets} packets of ${t.rxPackets > 0 ? (t.rxBytes / t.rxPackets).toFixed(0) : 0} B on average (${t.rxGso} GSO), wrote ${t.txPackets}${t.txGsoUdp ? ` (${t.txGsoUdp} writes UDP super-packets)` : ""}${t.txQueueFull ? `, ${t.txQueueFull} refused` : ""}`,
    ),
  ].join(", ");
}

/**
 * Runs `fn` (given the pids to watch besides the generator's: masq's, when there is one) between
 * two readings of masq's counters; `masq` is their difference, null without masq or when a
 * reading failed (`error` says why: a figure is not lost for its explanation).
 */
export async function withMasqCounters<T>(
  masq: MasqProcess | null,
  fn: (watchAlso: Record<string, number>) => Promise<T>,
): Promise<{ v: T; masq: MasqCounters | null; error?: string }> {
  if (!masq) return { v: await fn({}), masq: null };
  let error: string | undefined;
  const read = () =>
    masqCounters(masq).catch((e: unknown) => {
      error = `masq stats: ${e instanceof Error ? e.message : String(e)}`;
      return null;
    });
  const before = await read();
  const v = await fn({ masq: masq.proc.pid });
  const after = await read();
  return { v, masq: before && after ? countersDelta(before, after) : null, ...(error ? { error } : {}) };
}

/** Every non-zero counter of `masq stats --json` whose name says drop, refusal, error or failure. */
export async function masqProblemCounters(masq: MasqProcess): Promise<string> {
  const stats = JSON.parse(await masq.cli(["stats", "--json"])) as unknown;
  const hits: string[] = [];
  const walk = (v: unknown, path: string) => {
    if (typeof v === "number") {
      if (v > 0 && /drop|refus|error|fail|exhaust/i.test(path)) hits.push(`${path}=${v}`);
    } else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
    }
  };
  walk(stats, "");
  return hits.length ? hits.slice(0, 20).join(", ") : "none";
}
