// The latency figures of one round: UDP request/response and ping round trips through each
// side, idle and under a TCP load (latency.ts measures), into the samples and the log.
import { measureRtt, percentilesText, type RttOptions, type RttResult, underTcpLoad } from "./latency.ts";
import type { Side } from "./measure.ts";
import type { Samples } from "./report.ts";

/** UDP round trips per run: enough for a p99.9 of ten samples. */
export const RTT_SAMPLES = 10_000;
export const RTT_INTERVAL_US = 100;

function rttOptions(quick: boolean): RttOptions {
  return {
    udpSamples: RTT_SAMPLES,
    udpIntervalUs: RTT_INTERVAL_US,
    pingSamples: quick ? 300 : 1000,
    pingIntervalS: 0.002,
  };
}

/** What the bench's run gives a figure: its samples, notes and helpers (bench/e2e.ts). */
export interface FigureRun {
  samples: Samples;
  notes: string[];
  /** Runs fn on one side; null when it failed (the error is noted) or masq is down. */
  onSide<T>(side: Side, what: string, fn: () => Promise<T>): Promise<{ v: T } | null>;
  /** Warns when a generator's CPU is above the limit. */
  warnIfBusy(tag: string, what: string, generator: string, pct: number): void;
}

function record(run: FigureRun, side: Side, state: "idle" | "load", r: RttResult): void {
  const put = (probe: "rtt" | "ping", p: RttResult["udp"]) => {
    if (!p) return;
    const k = `${probe}_${state}`;
    run.samples[`${k}_p50`][side.kind].push(p.p50);
    run.samples[`${k}_p99`][side.kind].push(p.p99);
    run.samples[`${k}_p999`][side.kind].push(p.p999);
    run.samples[`${k}_max`][side.kind].push(p.max);
  };
  put("rtt", r.udp);
  put("ping", r.ping);
}

export async function latencyFigures(
  run: FigureRun,
  round: number,
  sides: Side[],
  tag: (s: Side) => string,
  quick: boolean,
): Promise<void> {
  const o = rttOptions(quick);
  // The load must outlast both probes: UDP at its interval (plus round trips) and ping.
  const loadSeconds =
    Math.ceil((o.udpSamples * (o.udpIntervalUs + 400)) / 1e6 + o.pingSamples * o.pingIntervalS * 1.5) + 5;
  for (const state of ["idle", "load"] as const) {
    for (const s of sides) {
      const what = `latency ${state === "idle" ? "idle" : "under TCP load"}`;
      const res = await run.onSide(s, what, async () =>
        state === "idle"
          ? { v: await measureRtt(s, o), loadGbps: Number.NaN }
          : underTcpLoad(s, loadSeconds, () => measureRtt(s, o)),
      );
      if (!res) continue;
      const { v, loadGbps } = res.v;
      record(run, s, state, v);
      const load =
        state === "load" ? ` (under iperf3 bbox -> Internet host at ${loadGbps.toFixed(2)} Gbit/s)` : "";
      log(
        `${tag(s)} ${what}${load}: UDP RTT ${percentilesText(v.udp)}, ${v.udpLost} of ${v.udpSent} lost, client CPU ${v.udpClientCpu.toFixed(0)}%; ping ${percentilesText(v.ping)} of ${v.pingSent}`,
      );
      run.warnIfBusy(tag(s), `${s.kind} ${what}, round ${round + 1}`, "the UDP RTT client", v.udpClientCpu);
      if (v.udpLost > 0)
        run.notes.push(
          `${s.kind} ${what}, round ${round + 1}: ${v.udpLost} of ${v.udpSent} UDP requests unanswered`,
        );
    }
  }
}

const log = (s: string) => process.stderr.write(`${s}\n`);

/** The report's lines on how latency was measured. */
export function latencyNotes(quick: boolean): string[] {
  const o = rttOptions(quick);
  return [
    `latency: from abox to the Internet host, idle and while iperf3 sends one TCP stream from bbox; UDP RTT: ${o.udpSamples} requests of 32 B, one at a time, ${o.udpIntervalUs} µs apart (bench/c/udp-rtt.c -> udp-echo.c); ping: ${o.pingSamples} echo requests ${o.pingIntervalS * 1000} ms apart; percentiles nearest-rank; "added by masq": masq minus kernel`,
  ];
}
