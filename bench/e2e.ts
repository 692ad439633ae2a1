// The end-to-end benchmark: the classic masquerade network (three inside hosts, a gateway, an
// ISP router, an Internet host) built twice in network namespaces, once translated by masq in
// the gateway namespace and once by the kernel's own NAT (nftables masquerade), measured with
// the same programs and printed side by side and as ratios masq/kernel:
//   - TCP throughput, iperf3, 1 and 4 streams, inside host -> Internet host;
//   - UDP 64-byte datagrams per second delivered (a sendmmsg blaster on an inside host; counted
//     by nftables on the Internet host, before any socket, from the public address only);
//   - new UDP flows per second (one datagram and one echoed reply from each of many fresh
//     source ports on every inside host; only completed exchanges count).
// Measurements alternate between the two networks (kernel then masq, then masq then kernel in
// the next round …) so a noisy machine disturbs both alike.
//
// Usage: npm run bench:e2e [-- --json] [-- --quick] [-- --mode interface|pool] [-- --rounds N]
//        [-- --only kernel|masq] [-- --masq-arg=--no-offload …]
import { readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type MasqProcess, startMasq } from "../src/lab/masq-process.ts";
import { buildMasqNetwork, enableKernelNat, type MasqMode, removeStaleNamespaces } from "../src/lab/netns.ts";
import {
  FLOW_PORT_FIRST,
  FLOW_PORT_LAST,
  measureFlows,
  measureTcp,
  measureUdp,
  newSide,
  oneLine,
  prepareHosts,
  type Side,
} from "./lib/measure.ts";
import { PYTHON } from "./lib/py.ts";
import { emptySamples, jsonFigures, type Samples, table } from "./lib/report.ts";

const USAGE = `usage: npm run bench:e2e -- [--json] [--quick] [--mode interface|pool] [--rounds N]
                        [--only kernel|masq] [--masq-arg ARG]...`;
const PREFIX = "masqbench";

const { values: opt } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    mode: { type: "string", default: "interface" },
    rounds: { type: "string" },
    only: { type: "string" },
    "masq-arg": { type: "string", multiple: true, default: [] },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const quick = opt.quick;
const mode = opt.mode as MasqMode;
if (mode !== "interface" && mode !== "pool") fail(`--mode must be interface or pool (got ${opt.mode})`);
const rounds = intOpt("rounds", opt.rounds ?? (quick ? "1" : "3"), 1, 10);
if (opt.only !== undefined && opt.only !== "kernel" && opt.only !== "masq")
  fail(`--only must be kernel or masq (got ${opt.only})`);
const masqArgs = opt["masq-arg"] ?? [];

const TCP_SECONDS = quick ? 2 : 4;
const TCP_OMIT = 1;
const UDP_SECONDS = quick ? 2 : 4;
const UDP_WARMUP = 1;
const FLOWS_PER_HOST = quick ? 2000 : 4500;
const FLOWS_WARMUP_PER_HOST = 300;
const FLOWS_MAX_SECONDS = quick ? 3 : 5;
/** Unanswered requests per generator: three windows fit in a TUN queue (500) with room. */
const FLOWS_WINDOW = 128;
/** masq's port range: wide enough for the flow test (the default 61000-65534 holds 4535). */
const MASQ_PORTS = { first: FLOW_PORT_FIRST, last: FLOW_PORT_LAST };
/** The gateway's own ephemeral ports, moved out of masq's range (both networks, for symmetry). */
const GATE_EPHEMERAL = "60000 65535";

const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function fail(msg: string): never {
  process.stderr.write(`bench:e2e: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function intOpt(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    fail(`--${name} must be an integer ${min}-${max} (got ${v})`);
  return n;
}

function errText(e: unknown): string {
  return oneLine(e instanceof Error ? e.message : String(e), 800);
}

// ---- masq ----

interface Masq {
  proc: MasqProcess | null;
  error: string | null;
  configPath: string;
  /** Ports of masq's range the flow test has taken since masq started (held for the UDP timeout). */
  flowPortsUsed: number;
  starts: number;
}

async function startMasqOn(side: Side, m: Masq): Promise<void> {
  try {
    m.proc = await startMasq(side.net, { config: m.configPath, flags: masqArgs });
    m.starts += 1;
    m.flowPortsUsed = 0;
    m.error = null;
  } catch (e) {
    m.proc = null;
    m.error = `masq did not start: ${errText(e)}`;
  }
}

async function stopMasq(m: Masq): Promise<void> {
  const p = m.proc;
  if (!p) return;
  m.proc = null;
  try {
    const code = await p.stop();
    if (code !== 0 && code !== null)
      log(`masq exited with code ${code}: ${oneLine(p.proc.stderr.slice(-400))}`);
  } catch (e) {
    log(`stopping masq: ${errText(e)}`);
  }
}

/** The fields of /proc/PID/stat after the command name (state first); null once the pid is gone. */
function procStat(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** CPU seconds (user + system: stat fields 14 and 15) a process has used; null if unreadable. */
function cpuSeconds(pid: number): number | null {
  const f = procStat(pid);
  return f ? (Number(f[11]) + Number(f[12])) / 100 : null;
}

/** True once `pid` has exited (a zombie not yet reaped counts) or is gone. */
function exitedPid(pid: number): boolean {
  const f = procStat(pid);
  return f === null || f[0] === "Z";
}

/**
 * Ctrl-C: the lab toolkit's own handler (installed with the first lab, so it runs after this
 * one) SIGKILLs everything in our namespaces and deletes them. masq gets a SIGTERM and up to 5 s
 * first, so it removes its state file and control socket (outside the namespaces) itself.
 * Synchronous: no awaiting in a signal handler that the next one ends with process.exit.
 */
function onSignal(m: Masq, signal: NodeJS.Signals): void {
  const pid = m.proc?.proc.running ? m.proc.proc.pid : -1;
  if (pid > 0) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 250 && !exitedPid(pid); i++) Atomics.wait(nap, 0, 0, 20);
  }
  if (process.listenerCount(signal) === 0) process.exit(signal === "SIGINT" ? 130 : 143);
}

// ---- the run ----

interface Ctx {
  sides: Side[];
  masq: Masq;
  samples: Samples;
  notes: string[];
  errors: string[];
}

/** Runs one measurement on one side; null (and an error noted) if it failed or masq is down. */
async function onSide<T>(
  ctx: Ctx,
  side: Side,
  what: string,
  fn: () => Promise<T>,
): Promise<{ v: T; cpu: string } | null> {
  const masq = side.kind === "masq" ? ctx.masq.proc : null;
  if (side.kind === "masq" && !masq?.proc.running) {
    if (masq) {
      const p = masq.proc;
      ctx.masq.error = `masq exited (code ${p.exitCode}, signal ${p.exitSignal}): ${oneLine(p.stderr.slice(-600))}`;
      ctx.masq.proc = null;
    }
    // Said once: every later masq measurement is skipped for the same reason.
    if (!ctx.errors.some((e) => e.startsWith("masq not running")))
      ctx.errors.push(`masq not running from ${what} on: ${ctx.masq.error ?? "?"}`);
    return null;
  }
  const c0 = masq ? cpuSeconds(masq.proc.pid) : null;
  const t0 = performance.now();
  try {
    const v = await fn();
    const c1 = masq ? cpuSeconds(masq.proc.pid) : null;
    const secs = (performance.now() - t0) / 1000;
    const cpu = c0 !== null && c1 !== null ? `, masq ${(((c1 - c0) / secs) * 100).toFixed(0)}% CPU` : "";
    return { v, cpu };
  } catch (e) {
    ctx.errors.push(`${side.kind} ${what}: ${errText(e)}`);
    return null;
  }
}

async function runRound(ctx: Ctx, round: number): Promise<void> {
  const sides = round % 2 === 0 ? ctx.sides : [...ctx.sides].reverse();
  const tag = (s: Side) => `[${round + 1}/${rounds}] ${s.kind.padEnd(6)}`;

  for (const streams of [1, 4]) {
    const key = streams === 1 ? "tcp1" : "tcp4";
    for (const s of sides) {
      const r = await onSide(ctx, s, `TCP x${streams}`, () => measureTcp(s, streams, TCP_SECONDS, TCP_OMIT));
      if (r) {
        ctx.samples[key][s.kind].push(r.v.gbps);
        log(
          `${tag(s)} TCP x${streams}: ${r.v.gbps.toFixed(2)} Gbit/s (iperf3 CPU client ${r.v.clientCpu.toFixed(0)}%, server ${r.v.serverCpu.toFixed(0)}%, ${r.v.retransmits} retransmits${r.cpu})`,
        );
      }
      await sleep(300);
    }
  }

  for (const s of sides) {
    const r = await onSide(ctx, s, "UDP 64 B", () =>
      measureUdp(s, { seconds: UDP_SECONDS, warmup: UDP_WARMUP, payload: 64 }),
    );
    if (r) {
      const v = r.v;
      ctx.samples.udp_pps[s.kind].push(v.pps);
      const lost = v.sentPps > 0 ? Math.max(0, 1 - v.pps / v.sentPps) * 100 : 0;
      log(
        `${tag(s)} UDP 64 B: ${(v.pps / 1e3).toFixed(1)} kpps delivered of ${(v.sentPps / 1e3).toFixed(1)} kpps sent (${lost.toFixed(1)}% lost${v.tunDropPps > 0 ? `, ${(v.tunDropPps / 1e3).toFixed(1)} kpps dropped at the full TUN queue` : ""}${v.mmsg ? "" : ", plain send(): slow generator"}${r.cpu})`,
      );
      if (v.otherPps > 0)
        ctx.errors.push(`${s.kind} UDP: ${v.otherPps.toFixed(0)} pps reached the Internet host untranslated`);
    }
    await sleep(300);
  }

  for (const s of sides) {
    if (s.kind === "masq" && ctx.masq.proc) {
      // The flow test's mappings hold masq ports for the UDP timeout (minutes): restart masq (a
      // fresh flow table) when the next test would not fit in its range.
      const need = (FLOWS_PER_HOST + FLOWS_WARMUP_PER_HOST) * s.net.inside.length;
      const size = MASQ_PORTS.last - MASQ_PORTS.first + 1;
      if (ctx.masq.flowPortsUsed + need > size * 0.9) {
        log(`${tag(s)} restarting masq: the flow test has taken ${ctx.masq.flowPortsUsed} of ${size} ports`);
        await stopMasq(ctx.masq);
        await startMasqOn(s, ctx.masq);
        if (ctx.masq.error) log(ctx.masq.error);
      }
    }
    const flows = (perHost: number, maxSeconds: number) => () =>
      measureFlows(s, { perHost, window: FLOWS_WINDOW, maxSeconds });
    const warm = await onSide(ctx, s, "new flows (warm-up)", flows(FLOWS_WARMUP_PER_HOST, 2));
    if (s.kind === "masq") ctx.masq.flowPortsUsed += FLOWS_WARMUP_PER_HOST * s.net.inside.length;
    if (warm && warm.v.replies === 0) {
      ctx.errors.push(`${s.kind} new flows: not one reply in the warm-up (${warm.v.sent} sent)`);
      continue;
    }
    const r = await onSide(ctx, s, "new flows", flows(FLOWS_PER_HOST, FLOWS_MAX_SECONDS));
    if (s.kind === "masq") ctx.masq.flowPortsUsed += FLOWS_PER_HOST * s.net.inside.length;
    if (r) {
      const v = r.v;
      ctx.samples.new_flows[s.kind].push(v.perSec);
      log(
        `${tag(s)} new UDP flows: ${(v.perSec / 1e3).toFixed(1)} k/s (${v.replies} of ${v.sent} answered in ${v.seconds.toFixed(2)} s by ${v.generators} generators, ${FLOWS_WINDOW} outstanding each${v.timedOut ? ", TIME LIMIT hit" : ""})`,
      );
      if (v.replies < v.sent * 0.99)
        ctx.notes.push(
          `${s.kind} new flows, round ${round + 1}: ${v.sent - v.replies} of ${v.sent} requests unanswered`,
        );
    }
    await sleep(300);
  }
}

/** masq's non-zero drop counters, for the report (why the masq side lost what it lost). */
async function masqDrops(ctx: Ctx): Promise<void> {
  if (!ctx.masq.proc?.proc.running) return;
  try {
    const stats = JSON.parse(await ctx.masq.proc.cli(["stats", "--json"])) as unknown;
    const hits: string[] = [];
    const walk = (v: unknown, path: string) => {
      if (typeof v === "number") {
        if (v > 0 && /drop|refus|error|fail|exhaust/i.test(path)) hits.push(`${path}=${v}`);
      } else if (v && typeof v === "object") {
        for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
      }
    };
    walk(stats, "");
    ctx.notes.push(
      `masq drops/errors since its last start: ${hits.length ? hits.slice(0, 20).join(", ") : "none"}`,
    );
  } catch (e) {
    ctx.notes.push(`masq stats unavailable: ${errText(e)}`);
  }
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) fail("needs root (it builds network namespaces)");
  const stale = await removeStaleNamespaces(PREFIX);
  if (stale.length) log(`removed ${stale.length} namespaces left by an earlier run: ${stale.join(" ")}`);
  const ctx: Ctx = {
    sides: [],
    masq: {
      proc: null,
      error: null,
      configPath: join(tmpdir(), `masqbench-e2e-${process.pid}.toml`),
      flowPortsUsed: 0,
      starts: 0,
    },
    samples: emptySamples(),
    notes: [],
    errors: [],
  };
  const started = Date.now();
  const removeConfig = () => {
    try {
      unlinkSync(ctx.masq.configPath);
    } catch {
      // not written, or already gone
    }
  };
  process.once("exit", removeConfig);
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => onSignal(ctx.masq, sig));
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  const header = `masq end-to-end benchmark: ${mode} mode, ${cpus().length} CPUs, load ${load}, ${quick ? "quick" : "full"}, ${rounds} round(s)`;
  log(header);
  try {
    for (const kind of ["kernel", "masq"] as const) {
      if (opt.only !== undefined && opt.only !== kind) continue;
      const net = await buildMasqNetwork({ prefix: PREFIX, mode });
      const side = newSide(kind, net);
      ctx.sides.push(side);
      await net.lab.sysctl(net.gate.ns, "net.ipv4.ip_local_port_range", GATE_EPHEMERAL);
      await prepareHosts(side);
      if (kind === "kernel") {
        await enableKernelNat(net);
        log(`kernel network up (${net.lab.id}-*): nftables ${mode === "pool" ? "snat" : "masquerade"}`);
      } else {
        writeFileSync(
          ctx.masq.configPath,
          [
            "# bench/e2e.ts: a port range wide enough for the flow test, no per-host cap below it",
            `ports = "${MASQ_PORTS.first}-${MASQ_PORTS.last}"`,
            "[limits]",
            "max_flows = 262144",
            "max_flows_per_host = 262144",
            "",
          ].join("\n"),
        );
        await startMasqOn(side, ctx.masq);
        // Nothing to compare without it (--only kernel measures the kernel alone).
        if (ctx.masq.error) throw new Error(ctx.masq.error);
        log(`masq network up (${net.lab.id}-*): masq run, ports ${MASQ_PORTS.first}-${MASQ_PORTS.last}`);
      }
    }
    for (let round = 0; round < rounds; round++) await runRound(ctx, round);
    await masqDrops(ctx);
  } catch (e) {
    ctx.errors.push(`aborted: ${errText(e)}`);
  } finally {
    await stopMasq(ctx.masq);
    for (const s of ctx.sides) await s.net.destroy();
    removeConfig();
  }

  const out = [
    header,
    "",
    table(ctx.samples, rounds),
    "",
    `TCP: iperf3 abox -> Internet host, ${TCP_SECONDS} s after ${TCP_OMIT} s omitted, receiver's throughput`,
    `UDP: one sendmmsg blaster (${PYTHON}) on abox, ${UDP_SECONDS} s after ${UDP_WARMUP} s, counted by nftables on the Internet host`,
    `new flows: ${FLOWS_PER_HOST} fresh source ports on each of 3 inside hosts, ${FLOWS_WINDOW} unanswered at most each (raw sockets, ${PYTHON}) -> UDP echo (2 Python processes); answered / (first request to last reply)`,
    `masq: ports ${MASQ_PORTS.first}-${MASQ_PORTS.last}, gateway ip_local_port_range ${GATE_EPHEMERAL} on both networks${masqArgs.length ? `, flags ${masqArgs.join(" ")}` : ""}; started ${ctx.masq.starts} time(s)`,
    ...ctx.notes.map((n) => `note: ${n}`),
    ...ctx.errors.map((e) => `error: ${e}`),
    `took ${((Date.now() - started) / 1000).toFixed(0)} s`,
  ];
  process.stdout.write(`${out.join("\n")}\n`);
  if (opt.json) {
    const o = { mode, quick, rounds, cpus: cpus().length, ...jsonFigures(ctx.samples), errors: ctx.errors };
    process.stdout.write(`${JSON.stringify(o)}\n`);
  }
  return ctx.errors.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`bench:e2e: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
