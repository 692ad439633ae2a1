// Latency through one side: round trips of small UDP requests (bench/c/udp-rtt.c against the
// C echo server on the Internet host) and of ping, from the first inside host, idle and while an
// iperf3 TCP load runs from the second inside host to the Internet host. Every sample is kept;
// the figures are percentiles over them (the p99.9 and the maximum show a GC pause or a long
// queue that the median hides).
import type { LabProcess } from "../../src/lab/netns.ts";
import { ECHO_PORT, oneLine, parseJson, type Side } from "./measure.ts";
import { pinned } from "./placement.ts";

export interface Percentiles {
  n: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

/**
 * Nearest-rank percentiles (the smallest sample with at least q of all at or below it), so each
 * figure is a measured round trip; null without samples.
 */
export function percentiles(samples: readonly number[]): Percentiles | null {
  const v = samples.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const at = (q: number) => v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))];
  return { n: v.length, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: v[v.length - 1] };
}

/** ping's round trips ("time=0.052 ms" per reply) in microseconds. */
export function parsePing(out: string): number[] {
  const rtts: number[] = [];
  for (const m of out.matchAll(/time=([\d.]+) ms/g)) rtts.push(Number(m[1]) * 1000);
  return rtts;
}

export interface RttResult {
  udp: Percentiles | null;
  /** Requests sent, and those that got no reply within the timeout. */
  udpSent: number;
  udpLost: number;
  /** The UDP client's own CPU, % of one core. */
  udpClientCpu: number;
  ping: Percentiles | null;
  pingSent: number;
}

export interface RttOptions {
  udpSamples: number;
  /** Between one request's send and the next one's. */
  udpIntervalUs: number;
  pingSamples: number;
  pingIntervalS: number;
}

/** A request unanswered this long is lost (no real round trip here takes a tenth of it). */
const RTT_TIMEOUT_MS = 1000;

/** UDP request/response, then ping, from the first inside host to the Internet host. */
export async function measureRtt(side: Side, o: RttOptions): Promise<RttResult> {
  const { net } = side;
  const host = net.inside[0];
  const udpArgv = [
    side.tools["udp-rtt"],
    net.inet.addr,
    String(ECHO_PORT),
    String(o.udpSamples),
    String(o.udpIntervalUs),
    String(RTT_TIMEOUT_MS),
  ];
  const udpBound = (o.udpSamples * (o.udpIntervalUs / 1e6 + 0.01) + 20) * 1000;
  const r = await net.lab.exec(host.ns, pinned(udpArgv), { timeoutMs: udpBound });
  const j = parseJson(r.stdout) as {
    sent: number;
    lost: number;
    cpu: number;
    wall: number;
    rtt_us: number[];
  } | null;
  if (!j) throw new Error(`udp-rtt failed (exit ${r.code}): ${oneLine(r.stderr || r.stdout)}`);
  const pingArgv = [
    "ping",
    "-n",
    "-c",
    String(o.pingSamples),
    "-i",
    String(o.pingIntervalS),
    "-W",
    "1",
    net.inet.addr,
  ];
  const pingBound = (o.pingSamples * (o.pingIntervalS + 0.01) + 20) * 1000;
  const p = await net.lab.exec(host.ns, pinned(pingArgv), { timeoutMs: pingBound });
  return {
    udp: percentiles(j.rtt_us),
    udpSent: j.sent,
    udpLost: j.lost,
    udpClientCpu: j.wall > 0 ? (j.cpu / j.wall) * 100 : Number.NaN,
    ping: percentiles(parsePing(p.stdout)),
    pingSent: o.pingSamples,
  };
}

/**
 * Runs `fn` while iperf3 sends one TCP stream from the second inside host to the Internet host
 * (its own port, so the throughput figures' servers are untouched); the load's Gbit/s with it.
 */
export async function underTcpLoad<T>(
  side: Side,
  maxSeconds: number,
  fn: () => Promise<T>,
): Promise<{ v: T; loadGbps: number }> {
  const { net } = side;
  const lab = net.lab;
  const port = side.nextIperfPort++;
  const server = lab.spawn(net.inet.ns, ["iperf3", "-s", "-1", "-p", String(port), "--forceflush"]);
  let client: LabProcess | null = null;
  try {
    await server.waitFor(/Server listening/, 5000);
    client = lab.spawn(net.inside[1].ns, [
      "iperf3",
      "-c",
      net.inet.addr,
      "-p",
      String(port),
      "-t",
      String(maxSeconds),
      "-J",
      "--connect-timeout",
      "3000",
    ]);
    // The load's first second (slow start) is not the load.
    await new Promise((res) => setTimeout(res, 1000));
    if (!client.running)
      throw new Error(`the iperf3 load ended early: ${oneLine(client.stderr || client.stdout)}`);
    const v = await fn();
    await client.kill("SIGINT", 3000);
    type Sum = { bits_per_second?: number };
    const j = parseJson(client.stdout) as { end?: { sum_received?: Sum; sum_sent?: Sum } } | null;
    // Stopped early, the client never hears the server's count (sum_received is 0): its own
    // sent rate is then the load's.
    const received = j?.end?.sum_received?.bits_per_second ?? 0;
    const bps = received > 0 ? received : (j?.end?.sum_sent?.bits_per_second ?? Number.NaN);
    return { v, loadGbps: bps / 1e9 };
  } finally {
    if (client?.running) await client.kill("SIGKILL", 1000);
    await server.kill("SIGTERM", 1000);
  }
}

/** "p50 38 µs, p99 61, p99.9 140, max 1210 (10000 samples)". */
export function percentilesText(p: Percentiles | null): string {
  if (!p) return "no samples";
  const f = (x: number) => x.toFixed(0);
  return `p50 ${f(p.p50)} µs, p99 ${f(p.p99)}, p99.9 ${f(p.p999)}, max ${f(p.max)} (${p.n} samples)`;
}
