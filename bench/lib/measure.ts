// The end-to-end measurements, each on one "side" (one copy of the classic masquerade network,
// translated either by the kernel's nftables masquerade or by masq). Every program runs with a
// time limit or is killed by pid afterwards; every figure counts only traffic that crossed the
// gateway translated (from its public address, or the replies to that).
import type { InsideHost, LabProcess, MasqNetwork } from "../../src/lab/netns.ts";
import type { CTools } from "./c-tools.ts";
import { CpuBusy, type CpuReport, CpuWatch, cpuSeconds } from "./cpu.ts";
import { pinned } from "./placement.ts";

export type SideKind = "kernel" | "masq";

export interface Side {
  kind: SideKind;
  net: MasqNetwork;
  /** The compiled traffic programs (bench/c). */
  tools: CTools;
  /** Per inside host: the next source port of the flow generator (fresh 5-tuples). */
  nextFlowPort: number[];
  /** UDP echo servers on the Internet host: the flow test's (FLOW_ECHO_PORTS from FLOW_ECHO_PORT). */
  echo: LabProcess[];
  /** Next TCP port for a one-off iperf3 server. */
  nextIperfPort: number;
}

export const UDP_SINK_PORT = 9;
/** startMasq's default TUN device. */
export const MASQ_TUN = "masq0";
/** The latency test's echo port. */
export const ECHO_PORT = 7007;
/**
 * The flow test's echo ports: its requests take them in turn, as real new flows go to many
 * destinations. With one, the kernel's NAT (a port space per destination) runs short of free
 * ports to it after ~50,000 flows within its 30 s UDP timeout and slows down by 10× (measured),
 * a limit of the test, not of what a gateway meets.
 */
export const FLOW_ECHO_PORT = 7100;
export const FLOW_ECHO_PORTS = 16;
export const FLOW_PORT_FIRST = 10_000;
export const FLOW_PORT_LAST = 59_999;
/** Echo server processes sharing the port (SO_REUSEPORT); one, batching, keeps up (its CPU is printed). */
export const ECHO_PROCS = 1;

export function newSide(kind: SideKind, net: MasqNetwork, tools: CTools): Side {
  return {
    kind,
    net,
    tools,
    nextFlowPort: net.inside.map(() => FLOW_PORT_FIRST),
    nextIperfPort: 5201,
    echo: [],
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Prepare the hosts: on the Internet host an nftables sink that counts (and drops, before any
 * socket) the UDP datagrams to port 9, separately for those from the public address and from
 * anything else (untranslated leaks), and the UDP echo servers of the flow test; on each inside
 * host a rule that keeps the kernel from answering the flow test's replies (which arrive at
 * ports without a socket; the generator reads them on a raw socket) with port-unreachable errors.
 */
export async function prepareHosts(side: Side): Promise<void> {
  const { net } = side;
  const sink = [
    "table inet e2ebench {",
    "  counter rx {}",
    "  counter other {}",
    "  chain pre {",
    "    type filter hook prerouting priority raw; policy accept;",
    `    udp dport ${UDP_SINK_PORT} ip saddr ${net.publicAddr} counter name "rx" drop`,
    `    udp dport ${UDP_SINK_PORT} counter name "other" drop`,
    "  }",
    "}",
    "",
  ].join("\n");
  await net.lab.run(net.inet.ns, ["nft", "-f", "-"], { input: sink });
  // masq merges a UDP flow's datagrams into super-packets on its TUN writes (udp-coalesce.ts),
  // which a veth would carry whole to the next host; the sink counts packets, so the gateway's
  // devices cut them into datagrams as they leave (a real NIC without USO does the same), on both
  // sides alike.
  for (const dev of [net.gate.wan, ...net.gate.lanPorts])
    await net.lab.run(net.gate.ns, ["ethtool", "-K", dev, "tx-udp-segmentation", "off"]);
  const noUnreachable = [
    "table inet e2ebench {",
    "  chain out {",
    "    type filter hook output priority raw; policy accept;",
    `    ip daddr ${net.inet.addr} icmp type destination-unreachable drop`,
    "  }",
    "}",
    "",
  ].join("\n");
  for (const h of net.inside) await net.lab.run(h.ns, ["nft", "-f", "-"], { input: noUnreachable });
  const echoArgv = [side.tools["udp-echo"], String(FLOW_ECHO_PORT), String(FLOW_ECHO_PORTS)];
  for (let i = 0; i < ECHO_PROCS; i++) {
    const p = net.lab.spawn(net.inet.ns, pinned(echoArgv));
    side.echo.push(p);
    await p.waitFor(/echo ready/, 10_000);
  }
  // The latency test's: one socket, blocking (no epoll step in its round trips).
  const rttEcho = net.lab.spawn(net.inet.ns, pinned([side.tools["udp-echo"], String(ECHO_PORT)]));
  await rttEcho.waitFor(/echo ready/, 10_000);
}

// ---------------------------------------------------------------------------------------------
// TCP: iperf3

export interface TcpResult {
  gbps: number;
  /** iperf3's own CPU figures (client host and server host, % of one core summed over threads). */
  clientCpu: number;
  serverCpu: number;
  retransmits: number;
}

export async function measureTcp(
  side: Side,
  streams: number,
  seconds: number,
  omit: number,
): Promise<TcpResult> {
  const { net } = side;
  const lab = net.lab;
  const port = side.nextIperfPort++;
  const server = lab.spawn(net.inet.ns, ["iperf3", "-s", "-1", "-p", String(port), "--forceflush"]);
  try {
    await server.waitFor(/Server listening/, 5000);
    const r = await lab.exec(
      net.inside[0].ns,
      [
        "iperf3",
        "-c",
        net.inet.addr,
        "-p",
        String(port),
        "-t",
        String(seconds),
        "-O",
        String(omit),
        "-P",
        String(streams),
        "-J",
        "--connect-timeout",
        "3000",
      ],
      { timeoutMs: (seconds + omit + 20) * 1000 },
    );
    const j = parseJson(r.stdout) as IperfJson | null;
    if (!j) throw new Error(`iperf3 client gave no JSON (exit ${r.code}): ${oneLine(r.stderr || r.stdout)}`);
    if (j.error) throw new Error(`iperf3: ${j.error}`);
    const recv = j.end?.sum_received?.bits_per_second;
    if (typeof recv !== "number") throw new Error("iperf3 JSON lacks end.sum_received.bits_per_second");
    const peer = /Accepted connection from ([\d.]+)/.exec(server.stdout)?.[1] ?? "?";
    if (peer !== net.publicAddr)
      throw new Error(`the iperf3 server saw ${peer}, not the public address ${net.publicAddr}`);
    return {
      gbps: recv / 1e9,
      clientCpu: j.end?.cpu_utilization_percent?.host_total ?? Number.NaN,
      serverCpu: j.end?.cpu_utilization_percent?.remote_total ?? Number.NaN,
      retransmits: j.end?.sum_sent?.retransmits ?? 0,
    };
  } finally {
    await server.kill("SIGTERM", 1000);
  }
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number };
    sum_sent?: { retransmits?: number };
    cpu_utilization_percent?: { host_total?: number; remote_total?: number };
  };
}

// ---------------------------------------------------------------------------------------------
// UDP small packets: a blaster on an inside host, counted by nftables on the Internet host.

export interface UdpResult {
  /** 64-byte datagrams per second that reached the Internet host from the public address. */
  pps: number;
  /** Datagrams per second the sender's interface transmitted in the same window. */
  sentPps: number;
  /** Datagrams per second that reached the Internet host from any other source (leaks). */
  otherPps: number;
  /** masq side: datagrams per second the kernel dropped at masq's full TUN queue (masq too slow to read). */
  tunDropPps: number;
  /** The blaster's own CPU over its whole run (getrusage), % of one core. */
  blasterCpu: number;
  /** The blaster's CPU (and masq's, when given) over the measured window. */
  cpu: CpuReport;
}

/** One blaster on the first inside host, pinned to the generators' CPU (placement.ts). */
export async function measureUdp(
  side: Side,
  opts: { seconds: number; warmup: number; payload: number; watchAlso: Readonly<Record<string, number>> },
): Promise<UdpResult> {
  const { net } = side;
  const host = net.inside[0];
  const runFor = opts.warmup + opts.seconds + 1;
  const blaster = net.lab.spawn(
    host.ns,
    pinned([
      side.tools["udp-blast"],
      net.inet.addr,
      String(UDP_SINK_PORT),
      String(runFor),
      String(opts.payload),
      "64",
    ]),
  );
  let watch: CpuWatch | null = null;
  try {
    await sleep(opts.warmup * 1000);
    const a = await snapshot(side, host);
    watch = new CpuWatch({ blaster: blaster.pid, ...opts.watchAlso });
    await sleep(opts.seconds * 1000);
    const b = await snapshot(side, host);
    const cpu = watch.stop();
    watch = null;
    const dt = (b.t - a.t) / 1000;
    await blaster.waitExit((runFor + 15) * 1000);
    const j = parseJson(blaster.stdout) as { sent?: number; cpu?: number; wall?: number } | null;
    if (!j)
      throw new Error(
        `UDP sender failed (exit ${blaster.exitCode}): ${oneLine(blaster.stderr || blaster.stdout)}`,
      );
    return {
      pps: (b.rx - a.rx) / dt,
      sentPps: (b.tx - a.tx) / dt,
      otherPps: (b.other - a.other) / dt,
      tunDropPps: (b.tunDropped - a.tunDropped) / dt,
      blasterCpu: j.cpu !== undefined && j.wall ? (j.cpu / j.wall) * 100 : Number.NaN,
      cpu,
    };
  } finally {
    watch?.stop();
    // The blaster ends by itself (bounded duration); killed if it has not by then.
    if (!(await blaster.waitExit((runFor + 15) * 1000))) await blaster.kill("SIGKILL", 1000);
  }
}

interface Snapshot {
  t: number;
  rx: number;
  other: number;
  tx: number;
  tunDropped: number;
}

async function snapshot(side: Side, host: InsideHost): Promise<Snapshot> {
  const { net } = side;
  const t1 = Date.now();
  const [rx, other, tx, tun] = await Promise.all([
    nftCounterIn(net, net.inet.ns, "rx"),
    nftCounterIn(net, net.inet.ns, "other"),
    txStats(net, host.ns, host.dev),
    side.kind === "masq" ? txStats(net, net.gate.ns, MASQ_TUN) : { packets: 0, dropped: 0 },
  ]);
  const t2 = Date.now();
  return { t: (t1 + t2) / 2, rx, other, tx: tx.packets, tunDropped: tun.dropped };
}

async function nftCounterIn(net: MasqNetwork, ns: string, name: string): Promise<number> {
  const out = await net.lab.run(ns, ["nft", "-j", "list", "counter", "inet", "e2ebench", name], {
    timeoutMs: 5000,
  });
  const j = parseJson(out) as { nftables?: { counter?: { packets?: number } }[] } | null;
  const c = j?.nftables?.find((e) => e.counter)?.counter?.packets;
  if (typeof c !== "number") throw new Error(`cannot read nft counter ${name}: ${oneLine(out)}`);
  return c;
}

async function txStats(
  net: MasqNetwork,
  ns: string,
  dev: string,
): Promise<{ packets: number; dropped: number }> {
  const out = await net.lab.run(ns, ["ip", "-j", "-s", "link", "show", "dev", dev], { timeoutMs: 5000 });
  const j = parseJson(out) as { stats64?: { tx?: { packets?: number; dropped?: number } } }[] | null;
  const tx = j?.[0]?.stats64?.tx;
  if (typeof tx?.packets !== "number") throw new Error(`cannot read tx statistics of ${dev} in ${ns}`);
  return { packets: tx.packets, dropped: tx.dropped ?? 0 };
}

// ---------------------------------------------------------------------------------------------
// New UDP flows: one datagram from each of many fresh source ports on every inside host, echoed
// by the Internet host; a flow counts when its reply is back at the inside host.

export interface FlowResult {
  /** Completed exchanges (request translated out, reply translated back) per second. */
  perSec: number;
  /** Requests sent, and replies received, summed over the generators. */
  sent: number;
  replies: number;
  /** From the first request to the last reply, over all generators. */
  seconds: number;
  generators: number;
  /** True when a generator stopped at its time limit, not at the end of its ports. */
  timedOut: boolean;
  /**
   * % of one core during the exchanges: each generator's own (getrusage from its first request
   * to its end), the echo servers' (/proc, over first request to last reply). All of them share
   * the generators' CPU, so their sum is what says whether that core was the limit.
   */
  generatorCpu: number[];
  echoCpu: number[];
  /** Each CPU's busy share from the exchanges' start to the generators' exit, softirq included. */
  perCpuBusyPct: number[];
  /** masq's CPU (% of one core) over the same span; null on the kernel's side. */
  masqCpu: number | null;
}

/** The CPU counters at the flow exchanges' agreed start. */
interface ExchangeStart {
  busy: CpuBusy;
  echo: number[];
  masq: number | null;
}

export async function measureFlows(
  side: Side,
  opts: { perHost: number; window: number; maxSeconds: number; masqPid?: number },
): Promise<FlowResult> {
  const { net } = side;
  if (side.echo.length === 0 || !side.echo.every((p) => p.running))
    throw new Error("the UDP echo servers on the Internet host are not running");
  // Each generator takes a block of source ports not used lately on this network: every request
  // must be a new 5-tuple for both NATs (the kernel keeps a replied UDP entry 30 s or more, masq
  // keeps a mapping for minutes; the blocks wrap only after several rounds).
  const blocks = net.inside.map((_h, i) => {
    let first = side.nextFlowPort[i];
    if (first + opts.perHost - 1 > FLOW_PORT_LAST) first = FLOW_PORT_FIRST;
    side.nextFlowPort[i] = first + opts.perHost;
    return first;
  });
  const startAt = Date.now() / 1000 + 0.3; // every generator is up and its packets built by then
  // CPU figures over the exchanges only (from the agreed start to the generators' exit), not
  // over the programs' start: the exchanges take a fraction of a second.
  let atStart: ExchangeStart | null = null;
  const sampleStart = setTimeout(
    () => {
      atStart = {
        busy: new CpuBusy(),
        echo: side.echo.map((p) => cpuSeconds(p.pid) ?? Number.NaN),
        masq: opts.masqPid !== undefined ? cpuSeconds(opts.masqPid) : null,
      };
    },
    Math.max(0, startAt * 1000 - Date.now()),
  );
  const results = await Promise.all(
    net.inside.map((h, i) =>
      net.lab.exec(
        h.ns,
        pinned([
          side.tools["flow-gen"],
          h.addr,
          net.inet.addr,
          String(FLOW_ECHO_PORT),
          String(FLOW_ECHO_PORTS),
          String(blocks[i]),
          String(opts.perHost),
          String(opts.window),
          startAt.toFixed(3),
          String(opts.maxSeconds),
        ]),
        { timeoutMs: (opts.maxSeconds + 15) * 1000 },
      ),
    ),
  );
  clearTimeout(sampleStart);
  const endedAt = Date.now() / 1000;
  // Assigned in the timer (TypeScript cannot see that it may have run).
  const start = atStart as ExchangeStart | null;
  const echo1 = side.echo.map((p) => cpuSeconds(p.pid) ?? Number.NaN);
  const masq1 = opts.masqPid !== undefined ? cpuSeconds(opts.masqPid) : null;
  const perCpuBusyPct = start ? start.busy.stop() : [];
  const span = endedAt - startAt;
  const generatorCpu: number[] = [];
  let sent = 0;
  let replies = 0;
  let t0 = Number.POSITIVE_INFINITY;
  let t1 = 0;
  let timedOut = false;
  for (const r of results) {
    const j = parseJson(r.stdout) as {
      sent: number;
      got: number;
      t0: number;
      t1: number;
      timedOut: boolean;
      cpu: number;
      wall: number;
    } | null;
    if (!j) throw new Error(`flow generator failed (exit ${r.code}): ${oneLine(r.stderr || r.stdout)}`);
    sent += j.sent;
    replies += j.got;
    t0 = Math.min(t0, j.t0);
    t1 = Math.max(t1, j.t1);
    timedOut ||= j.timedOut;
    generatorCpu.push(j.wall > 0 ? (j.cpu / j.wall) * 100 : Number.NaN);
  }
  const seconds = t1 > t0 ? t1 - t0 : 0;
  return {
    perSec: seconds > 0 ? replies / seconds : 0,
    sent,
    replies,
    seconds,
    generators: results.length,
    timedOut,
    generatorCpu,
    // Idle outside the exchanges, so their CPU time over the exchanges' span.
    echoCpu: side.echo.map((_p, i) =>
      start && seconds > 0 ? ((echo1[i] - start.echo[i]) / seconds) * 100 : Number.NaN,
    ),
    perCpuBusyPct,
    masqCpu: start?.masq != null && masq1 !== null && span > 0 ? ((masq1 - start.masq) / span) * 100 : null,
  };
}

// ---------------------------------------------------------------------------------------------

export function parseJson(text: string): unknown {
  const t = text.trim();
  if (t === "") return null;
  try {
    return JSON.parse(t);
  } catch {
    // A program may print something before its JSON: try the last line.
    const last = t.split("\n").pop() ?? "";
    try {
      return JSON.parse(last);
    } catch {
      return null;
    }
  }
}

export function oneLine(s: string, max = 300): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}
