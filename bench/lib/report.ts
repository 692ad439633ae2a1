// Collecting per-round figures and printing them side by side (kernel | masq | masq/kernel).

export interface MetricDef {
  key: string;
  /** JSON name of the raw figure, after "kernel_" or "masq_". */
  json: string;
  label: string;
  unit: string;
  /** Display scale: shown value = raw / scale. */
  scale: number;
  digits: number;
  /**
   * How rounds combine: the median (default), or the sum, for counts of failures (one failing
   * round must show). Sums get no masq/kernel ratio.
   */
  agg?: "median" | "sum";
  /** Latencies: the table and the JSON also give masq minus kernel ("added by masq"). */
  added?: boolean;
}

/** The latency rows of one probe (UDP request/response or ping) in one state (idle, TCP load). */
function latencyMetrics(probe: "rtt" | "ping", state: "idle" | "load"): MetricDef[] {
  const k = `${probe}_${state}`;
  const what = probe === "rtt" ? "UDP RTT" : "ping RTT";
  const label = `${what}, ${state === "idle" ? "idle" : "TCP load"}`;
  const row = (q: string, l: string): MetricDef => ({
    key: `${k}_${q}`,
    json: `${k}_${q}_us`,
    label: l,
    unit: "µs",
    scale: 1,
    digits: 0,
    added: true,
  });
  return [row("p50", `${label}, p50`), row("p99", "  p99"), row("p999", "  p99.9"), row("max", "  max")];
}

/** The HTTP load's rows for `n` parallel connections (key prefix http<n>). */
function httpMetrics(n: number): MetricDef[] {
  const k = `http${n}`;
  const label = `HTTP 100 KB, ${n} conns`;
  return [
    { key: `${k}_rps`, json: `${k}_req_per_s`, label, unit: "req/s", scale: 1, digits: 0 },
    { key: `${k}_mbps`, json: `${k}_mb_per_s`, label: "  transfer", unit: "MB/s", scale: 1, digits: 0 },
    {
      key: `${k}_mean`,
      json: `${k}_latency_mean_ms`,
      label: "  mean latency",
      unit: "ms",
      scale: 1,
      digits: 1,
    },
    { key: `${k}_p99`, json: `${k}_latency_p99_ms`, label: "  p99 latency", unit: "ms", scale: 1, digits: 1 },
    {
      key: `${k}_errors`,
      json: `${k}_errors`,
      label: "  wrk errors",
      unit: "all rounds",
      scale: 1,
      digits: 0,
      agg: "sum",
    },
  ];
}

export const METRICS: readonly MetricDef[] = [
  { key: "tcp1", json: "tcp1_gbps", label: "TCP, 1 stream", unit: "Gbit/s", scale: 1, digits: 2 },
  { key: "tcp4", json: "tcp4_gbps", label: "TCP, 4 streams", unit: "Gbit/s", scale: 1, digits: 2 },
  { key: "udp_pps", json: "udp_pps", label: "UDP 64 B delivered", unit: "kpps", scale: 1e3, digits: 1 },
  { key: "new_flows", json: "new_flows_per_s", label: "new UDP flows", unit: "k/s", scale: 1e3, digits: 1 },
  ...httpMetrics(500),
  ...httpMetrics(50),
  {
    key: "short",
    json: "short_conns_per_s",
    label: "short connections",
    unit: "conn/s",
    scale: 1,
    digits: 0,
  },
  {
    key: "short_failed",
    json: "short_conns_failed",
    label: "  failed",
    unit: "all rounds",
    scale: 1,
    digits: 0,
    agg: "sum",
  },
  ...latencyMetrics("rtt", "idle"),
  ...latencyMetrics("rtt", "load"),
  ...latencyMetrics("ping", "idle"),
  ...latencyMetrics("ping", "load"),
];

export type Samples = Record<string, { kernel: number[]; masq: number[] }>;

export function emptySamples(): Samples {
  const s: Samples = {};
  for (const m of METRICS) s[m.key] = { kernel: [], masq: [] };
  return s;
}

export function median(xs: readonly number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function combine(m: MetricDef, xs: readonly number[]): number | null {
  if (m.agg !== "sum") return median(xs);
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0);
}

/** masq minus kernel (a latency masq adds); null unless both were measured. */
export function added(masq: number | null, kernel: number | null): number | null {
  return masq === null || kernel === null ? null : masq - kernel;
}

export function ratio(masq: number | null, kernel: number | null): number | null {
  if (masq === null || kernel === null || !(kernel > 0)) return null;
  return masq / kernel;
}

function fmt(x: number | null, scale: number, digits: number): string {
  return x === null ? "—" : (x / scale).toFixed(digits);
}

/** The side-by-side table (medians over rounds). */
export function table(samples: Samples, rounds: number): string {
  const rows: string[][] = [["", "kernel", "masq", "masq/kernel", "added by masq"]];
  for (const m of METRICS) {
    const k = combine(m, samples[m.key].kernel);
    const q = combine(m, samples[m.key].masq);
    const r = m.agg === "sum" ? null : ratio(q, k);
    rows.push([
      `${m.label} (${m.unit})`,
      fmt(k, m.scale, m.digits),
      fmt(q, m.scale, m.digits),
      r === null ? "—" : r.toFixed(2),
      m.added ? fmt(added(q, k), m.scale, m.digits) : "",
    ]);
  }
  const widths = rows[0].map((_c, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join("   ")
      .trimEnd();
  const out = rows.map(line);
  out.splice(1, 0, widths.map((w) => "-".repeat(w)).join("   "));
  if (rounds > 1) out.push(`(medians of ${rounds} rounds; counts marked "all rounds" are sums)`);
  return out.join("\n");
}

/**
 * JSON figures (medians, or sums for counts of failures): <key>_ratio (masq/kernel, not for
 * sums), <key>_added_by_masq_us (latencies: masq minus kernel), kernel_<json>, masq_<json>, and every round's figures under "per_round". A figure not
 * measured is null.
 */
export function jsonFigures(samples: Samples): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const perRound: Record<string, number[]> = {};
  for (const m of METRICS) {
    const k = combine(m, samples[m.key].kernel);
    const q = combine(m, samples[m.key].masq);
    if (m.agg !== "sum") o[`${m.key}_ratio`] = ratio(q, k);
    if (m.added) o[`${m.key}_added_by_masq_us`] = added(q, k);
    o[`kernel_${m.json}`] = k;
    o[`masq_${m.json}`] = q;
    perRound[`kernel_${m.json}`] = samples[m.key].kernel;
    perRound[`masq_${m.json}`] = samples[m.key].masq;
  }
  o.per_round = perRound;
  return o;
}
