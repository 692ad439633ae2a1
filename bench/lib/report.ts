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
}

export const METRICS: readonly MetricDef[] = [
  { key: "tcp1", json: "tcp1_gbps", label: "TCP, 1 stream", unit: "Gbit/s", scale: 1, digits: 2 },
  { key: "tcp4", json: "tcp4_gbps", label: "TCP, 4 streams", unit: "Gbit/s", scale: 1, digits: 2 },
  { key: "udp_pps", json: "udp_pps", label: "UDP 64 B delivered", unit: "kpps", scale: 1e3, digits: 1 },
  { key: "new_flows", json: "new_flows_per_s", label: "new UDP flows", unit: "k/s", scale: 1e3, digits: 1 },
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

export function ratio(masq: number | null, kernel: number | null): number | null {
  if (masq === null || kernel === null || !(kernel > 0)) return null;
  return masq / kernel;
}

function fmt(x: number | null, scale: number, digits: number): string {
  return x === null ? "—" : (x / scale).toFixed(digits);
}

/** The side-by-side table (medians over rounds). */
export function table(samples: Samples, rounds: number): string {
  const rows: string[][] = [["", "kernel", "masq", "masq/kernel"]];
  for (const m of METRICS) {
    const k = median(samples[m.key].kernel);
    const q = median(samples[m.key].masq);
    const r = ratio(q, k);
    rows.push([
      `${m.label} (${m.unit})`,
      fmt(k, m.scale, m.digits),
      fmt(q, m.scale, m.digits),
      r === null ? "—" : r.toFixed(2),
    ]);
  }
  const widths = rows[0].map((_c, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("   ");
  const out = rows.map(line);
  out.splice(1, 0, widths.map((w) => "-".repeat(w)).join("   "));
  if (rounds > 1) out.push(`(medians of ${rounds} rounds)`);
  return out.join("\n");
}

/**
 * JSON figures (medians): <key>_ratio (masq/kernel), kernel_<json>, masq_<json>, and every
 * round's figures under "per_round". A figure not measured is null.
 */
export function jsonFigures(samples: Samples): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const perRound: Record<string, number[]> = {};
  for (const m of METRICS) {
    const k = median(samples[m.key].kernel);
    const q = median(samples[m.key].masq);
    o[`${m.key}_ratio`] = ratio(q, k);
    o[`kernel_${m.json}`] = k;
    o[`masq_${m.json}`] = q;
    perRound[`kernel_${m.json}`] = samples[m.key].kernel;
    perRound[`masq_${m.json}`] = samples[m.key].masq;
  }
  o.per_round = perRound;
  return o;
}
