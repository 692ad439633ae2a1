// Network-namespace toolkit for end-to-end tests, `masq lab` and the e2e benchmark.
//
// A Lab creates namespaces whose names carry a prefix, this process's pid and a counter, so
// parallel runs never collide, and it remembers everything it made: destroy() kills the
// processes it spawned (by pid) and deletes its namespaces (veths, bridges and routes inside
// go with them). Nothing here touches the root namespace: veth pairs are created directly in
// their target namespaces (`ip -n A link add ... peer ... netns B`).

import { type ChildProcess, spawn as spawnChild, spawnSync } from "node:child_process";
import { type ExecResult, exec as execIn, run as runIn } from "../host/exec.ts";

export type { ExecResult };

export interface LabOptions {
  /** Start of every namespace name (default "masq"); the pid and a counter follow. */
  prefix?: string;
}

export interface ExecOpts {
  timeoutMs?: number;
  input?: string;
}

export interface SpawnOpts {
  /** Keep stdin open as a pipe (default: closed). */
  stdin?: boolean;
  /** Environment of the process (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

let labCounter = 0;
const liveLabs = new Set<Lab>();

/** A background process started inside a namespace; `ip netns exec` execs, so pid is the program's. */
export class LabProcess {
  readonly pid: number;
  readonly ns: string;
  readonly argv: readonly string[];
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<void>;
  private static readonly MAX_CAPTURE = 1 << 20;

  constructor(ns: string, argv: readonly string[], opts: SpawnOpts = {}) {
    this.ns = ns;
    this.argv = argv;
    this.child = spawnChild("ip", ["netns", "exec", ns, ...argv], {
      stdio: [opts.stdin ? "pipe" : "ignore", "pipe", "pipe"],
      env: opts.env ?? process.env,
    });
    if (this.child.pid === undefined) {
      // Spawn failed synchronously (e.g. ENOENT); 'error' follows, exited resolves then.
      this.pid = -1;
    } else {
      this.pid = this.child.pid;
    }
    const cap = (s: string, d: Buffer) => (s.length < LabProcess.MAX_CAPTURE ? s + d.toString("utf8") : s);
    this.child.stdout?.on("data", (d: Buffer) => {
      this.stdout = cap(this.stdout, d);
    });
    this.child.stderr?.on("data", (d: Buffer) => {
      this.stderr = cap(this.stderr, d);
    });
    this.exited = new Promise((resolve) => {
      this.child.on("error", (err) => {
        this.stderr += `spawn error: ${err.message}\n`;
        if (this.exitCode === null) this.exitCode = -1;
        resolve();
      });
      // 'exit', not 'close': a grandchild holding stdout open must not hide the exit.
      this.child.on("exit", (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
    });
  }

  get running(): boolean {
    return this.pid > 0 && this.exitCode === null && this.exitSignal === null;
  }

  /** Wait until stdout or stderr matches `pattern`; rejects on exit or timeout. */
  async waitFor(pattern: RegExp | string, timeoutMs = 15_000): Promise<string> {
    const matches = () => {
      const text = this.stdout + this.stderr;
      return typeof pattern === "string" ? text.includes(pattern) : pattern.test(text);
    };
    const deadline = Date.now() + timeoutMs;
    // Bounded polling: at most timeoutMs / 20 rounds.
    while (!matches() && this.running && Date.now() < deadline) await sleep(20);
    if (matches()) return this.stdout + this.stderr;
    const why = this.running ? `not seen within ${timeoutMs} ms` : "process exited before it appeared";
    throw new Error(
      `${String(pattern)} ${why} (${this.argv.join(" ")} in ${this.ns}); stdout: ${this.stdout.slice(-500)} stderr: ${this.stderr.slice(-500)}`,
    );
  }

  /** Send `signal` to this pid, wait up to graceMs, then SIGKILL it. */
  async kill(signal: NodeJS.Signals = "SIGTERM", graceMs = 2000): Promise<void> {
    if (!this.running) return;
    signalPid(this.pid, signal);
    if (!(await this.waitExit(graceMs))) {
      signalPid(this.pid, "SIGKILL");
      // Generous: a killed masq exits only once the kernel has removed its TUN, which waits for
      // the rtnl lock that other namespaces being deleted on a busy machine may hold for seconds;
      // a new masq started before that finds the old TUN still there.
      await this.waitExit(15_000);
    }
  }

  /** Wait (bounded) for the process to exit; true if it did. */
  async waitExit(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.running && Date.now() < deadline) await sleep(20);
    return !this.running;
  }
}

export interface DestroyReport {
  namespaces: string[];
  errors: string[];
}

export class Lab {
  /** Prefix + pid + counter: the start of every namespace name of this lab. */
  readonly id: string;
  private readonly namespaces: string[] = [];
  private readonly procs: LabProcess[] = [];
  private destroyed = false;

  constructor(opts: LabOptions = {}) {
    const prefix = opts.prefix ?? "masq";
    if (!/^[A-Za-z0-9_-]{1,40}$/.test(prefix))
      throw new Error(`invalid lab prefix ${JSON.stringify(prefix)}`);
    labCounter += 1;
    this.id = `${prefix}-${process.pid}-${labCounter}`;
    liveLabs.add(this);
    installExitHandlers();
  }

  /** Full namespace name for a short name ("gate" -> "masq-1234-1-gate"). */
  nsName(short: string): string {
    return `${this.id}-${short}`;
  }

  /** Namespaces created so far (full names). */
  get createdNamespaces(): readonly string[] {
    return this.namespaces;
  }

  /** Create a namespace with loopback up; returns its full name. */
  async addNamespace(short: string): Promise<string> {
    this.assertAlive();
    if (!/^[A-Za-z0-9_-]{1,20}$/.test(short)) throw new Error(`invalid namespace short name ${short}`);
    const ns = this.nsName(short);
    // Record first: if `ip netns add` half-succeeds, destroy() still tries to remove it.
    this.namespaces.push(ns);
    await runIn(["ip", "netns", "add", ns]);
    await this.ip(ns, "link", "set", "dev", "lo", "up");
    return ns;
  }

  /** `ip -n NS args...`; resolves with stdout, throws a CommandError on failure. */
  ip(ns: string, ...args: string[]): Promise<string> {
    return runIn(["ip", "-n", ns, ...args]);
  }

  /** A veth pair from `a.dev` in `a.ns` to `b.dev` in `b.ns`, both ends up. */
  async veth(
    a: { ns: string; dev: string },
    b: { ns: string; dev: string },
    opts: { mtu?: number } = {},
  ): Promise<void> {
    const mtu = opts.mtu ? ["mtu", String(opts.mtu)] : [];
    await this.ip(
      a.ns,
      "link",
      "add",
      a.dev,
      ...mtu,
      "type",
      "veth",
      "peer",
      "name",
      b.dev,
      ...mtu,
      "netns",
      b.ns,
    );
    await this.ip(a.ns, "link", "set", "dev", a.dev, "up");
    await this.ip(b.ns, "link", "set", "dev", b.dev, "up");
  }

  /** A bridge in `ns` enslaving `ports` (STP off, no forwarding delay), up. */
  async bridge(ns: string, name: string, ports: string[] = []): Promise<void> {
    await this.ip(ns, "link", "add", "name", name, "type", "bridge", "stp_state", "0", "forward_delay", "0");
    for (const port of ports) await this.ip(ns, "link", "set", "dev", port, "master", name);
    await this.ip(ns, "link", "set", "dev", name, "up");
  }

  async addAddr(ns: string, dev: string, cidr: string): Promise<void> {
    await this.ip(ns, "addr", "add", cidr, "dev", dev);
  }

  async up(ns: string, dev: string): Promise<void> {
    await this.ip(ns, "link", "set", "dev", dev, "up");
  }

  /** `ip -n NS route add ARGS...`, e.g. addRoute(ns, "default", "via", "192.168.0.1"). */
  async addRoute(ns: string, ...args: string[]): Promise<void> {
    await this.ip(ns, "route", "add", ...args);
  }

  async sysctl(ns: string, key: string, value: string | number): Promise<void> {
    await this.run(ns, ["sysctl", "-q", "-w", `${key}=${value}`]);
  }

  /** Run a program in `ns` to completion (default timeout 10 s); never throws for a non-zero exit. */
  exec(ns: string, argv: readonly string[], opts: ExecOpts = {}): Promise<ExecResult> {
    return execIn(argv, {
      netns: ns,
      timeoutMs: opts.timeoutMs ?? 10_000,
      ...(opts.input === undefined ? {} : { input: opts.input }),
    });
  }

  /** Like exec but resolves with stdout and throws (naming the command and stderr) on failure. */
  run(ns: string, argv: readonly string[], opts: ExecOpts = {}): Promise<string> {
    return runIn(argv, {
      netns: ns,
      timeoutMs: opts.timeoutMs ?? 10_000,
      ...(opts.input === undefined ? {} : { input: opts.input }),
    });
  }

  /** Start a background program in `ns`; destroy() kills it by pid if it is still running. */
  spawn(ns: string, argv: readonly string[], opts: SpawnOpts = {}): LabProcess {
    this.assertAlive();
    const p = new LabProcess(ns, argv, opts);
    this.procs.push(p);
    return p;
  }

  /**
   * Kill every process this lab spawned (by pid), then any process still inside one of its
   * namespaces (they can only have been started through this lab), and delete the namespaces.
   * Tolerates partial failures; errors are collected, not thrown. Safe to call twice.
   */
  async destroy(): Promise<DestroyReport> {
    const report: DestroyReport = { namespaces: [...this.namespaces], errors: [] };
    if (this.destroyed) return report;
    this.destroyed = true;
    await Promise.all(this.procs.map((p) => p.kill().catch((e: unknown) => report.errors.push(String(e)))));
    for (const ns of [...this.namespaces].reverse()) {
      for (const pid of await nsPids(ns)) signalPid(pid, "SIGKILL");
      const r = await execIn(["ip", "netns", "del", ns], { timeoutMs: 10_000 });
      if (r.code !== 0 && !/No such file|not found/i.test(r.stderr))
        report.errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
    }
    liveLabs.delete(this);
    if (report.errors.length > 0)
      process.stderr.write(`lab ${this.id} destroy: ${report.errors.join("; ")}\n`);
    return report;
  }

  /** Synchronous destroy for signal and exit handlers (no awaiting possible there). */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const p of this.procs) if (p.running) signalPid(p.pid, "SIGKILL");
    for (const ns of [...this.namespaces].reverse()) {
      const pids = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8", timeout: 5000 });
      for (const pid of parsePids(pids.stdout ?? "")) signalPid(pid, "SIGKILL");
      spawnSync("ip", ["netns", "del", ns], { timeout: 5000 });
    }
    liveLabs.delete(this);
  }

  private assertAlive(): void {
    if (this.destroyed) throw new Error(`lab ${this.id} was destroyed`);
  }
}

/** Run `fn` with a fresh Lab and destroy it afterwards, whatever happens (also on SIGINT/SIGTERM). */
export async function withTopology<T>(fn: (lab: Lab) => Promise<T>, opts: LabOptions = {}): Promise<T> {
  const lab = new Lab(opts);
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}

/** Namespaces (by name) currently present whose names start with `prefix`. */
export async function listNamespaces(prefix = ""): Promise<string[]> {
  const out = await runIn(["ip", "netns", "list"]);
  return out
    .split("\n")
    .map((l) => l.split(" ")[0])
    .filter((n) => n !== "" && n.startsWith(prefix));
}

/**
 * Delete namespaces left by labs of processes that died without cleaning up (SIGKILL, OOM):
 * names `<prefix>-<pid>-<n>-<short>` whose pid no longer runs. Processes still inside them are
 * not touched. Returns the names deleted.
 */
export async function removeStaleNamespaces(prefix = "masq"): Promise<string[]> {
  const removed: string[] = [];
  const pattern = new RegExp(`^${prefix.replace(/[^\w-]/g, "")}-(\\d+)-\\d+-`);
  for (const ns of await listNamespaces(`${prefix}-`)) {
    const m = pattern.exec(ns);
    if (!m || isPidAlive(Number(m[1]))) continue;
    const r = await execIn(["ip", "netns", "del", ns], { timeoutMs: 10_000 });
    if (r.code === 0) removed.push(ns);
  }
  return removed;
}

function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

// ---- the classic masquerade network (Linux IP-Masquerade HOWTO) ----
//
//   abox 192.168.0.2 ─┐
//   bbox 192.168.0.3 ─┼─ lan0 (bridge) 192.168.0.1  [gate]  wan0 198.51.100.2/30 ── 198.51.100.1 [isp] 203.0.113.1 ── 203.0.113.10 [inet]
//   cbox 192.168.0.4 ─┘
//
// The isp has no route to 192.168.0.0/24, so nothing from the inside gets an answer unless the
// gateway translates. Pool mode: the public address 198.51.100.100 is held by no interface; the
// isp routes it to the gateway (198.51.100.2).

export type MasqMode = "interface" | "pool";

export interface InsideHost {
  name: "abox" | "bbox" | "cbox";
  ns: string;
  dev: string;
  addr: string;
}

export interface MasqNetwork {
  lab: Lab;
  mode: MasqMode;
  ns: { abox: string; bbox: string; cbox: string; gate: string; isp: string; inet: string };
  inside: InsideHost[];
  /** The inside network and its prefix length. */
  insideNet: string;
  gate: {
    ns: string;
    /** Bridge holding the gateway's inside address; the inside interface masq steers. */
    lan: string;
    lanAddr: string;
    /** Gateway-side veths enslaved to the bridge, one per inside host. */
    lanPorts: string[];
    wan: string;
    wanAddr: string;
    wanPrefixLen: number;
  };
  isp: { ns: string; toGate: string; toGateDev: string; toInet: string; toInetDev: string };
  inet: { ns: string; addr: string; dev: string };
  /** The address the Internet sees: wan0's own (interface mode) or the pool address. */
  publicAddr: string;
  /** Pool mode: the pool prefixes (["198.51.100.100/32"]); empty in interface mode. */
  pool: string[];
  destroy(): Promise<DestroyReport>;
}

export interface BuildMasqNetworkOptions {
  /** Namespace name prefix (default "masq"); ignored when `lab` is given. */
  prefix?: string;
  mode: MasqMode;
  /** Build into an existing lab (its owner destroys it); default: a new lab. */
  lab?: Lab;
  /** Pool mode: the pool prefix the isp routes to the gateway (default "198.51.100.100/32"). */
  pool?: string;
  /** MTU of every veth (default: the kernel's 1500). */
  mtu?: number;
  /**
   * MTU of the gateway <-> ISP link alone (both ends), e.g. 1492 for a PPPoE WAN behind a 1500
   * LAN and a 1500 Internet beyond the ISP: the gateway must then send fragmentation-needed.
   */
  wanMtu?: number;
}

export async function buildMasqNetwork(opts: BuildMasqNetworkOptions): Promise<MasqNetwork> {
  const lab = opts.lab ?? new Lab({ prefix: opts.prefix ?? "masq" });
  try {
    return await build(lab, opts);
  } catch (err) {
    if (!opts.lab) await lab.destroy();
    throw err;
  }
}

async function build(lab: Lab, opts: BuildMasqNetworkOptions): Promise<MasqNetwork> {
  const link = opts.mtu ? { mtu: opts.mtu } : {};
  const poolPrefix = opts.pool ?? "198.51.100.100/32";
  const ns = {
    abox: await lab.addNamespace("abox"),
    bbox: await lab.addNamespace("bbox"),
    cbox: await lab.addNamespace("cbox"),
    gate: await lab.addNamespace("gate"),
    isp: await lab.addNamespace("isp"),
    inet: await lab.addNamespace("inet"),
  };

  // Inside: three hosts on a bridge in the gateway.
  const inside: InsideHost[] = (["abox", "bbox", "cbox"] as const).map((name, i) => ({
    name,
    ns: ns[name],
    dev: "eth0",
    addr: `192.168.0.${i + 2}`,
  }));
  const lanPorts = inside.map((h) => `lan-${h.name}`);
  for (const [i, h] of inside.entries()) {
    await lab.veth({ ns: ns.gate, dev: lanPorts[i] }, { ns: h.ns, dev: h.dev }, link);
  }
  await lab.bridge(ns.gate, "lan0", lanPorts);
  if (opts.mtu) await lab.ip(ns.gate, "link", "set", "dev", "lan0", "mtu", String(opts.mtu));
  await lab.addAddr(ns.gate, "lan0", "192.168.0.1/24");
  for (const h of inside) {
    await lab.addAddr(h.ns, h.dev, `${h.addr}/24`);
    await lab.addRoute(h.ns, "default", "via", "192.168.0.1");
  }

  // Gateway <-> ISP.
  await lab.veth(
    { ns: ns.gate, dev: "wan0" },
    { ns: ns.isp, dev: "down0" },
    opts.wanMtu ? { mtu: opts.wanMtu } : link,
  );
  await lab.addAddr(ns.gate, "wan0", "198.51.100.2/30");
  await lab.addAddr(ns.isp, "down0", "198.51.100.1/30");
  await lab.addRoute(ns.gate, "default", "via", "198.51.100.1");
  await lab.sysctl(ns.gate, "net.ipv4.ip_forward", 1);

  // ISP <-> Internet host. No route back to 192.168.0.0/24 anywhere past the gateway.
  await lab.veth({ ns: ns.isp, dev: "up0" }, { ns: ns.inet, dev: "eth0" }, link);
  await lab.addAddr(ns.isp, "up0", "203.0.113.1/24");
  await lab.addAddr(ns.inet, "eth0", "203.0.113.10/24");
  await lab.addRoute(ns.inet, "default", "via", "203.0.113.1");
  await lab.sysctl(ns.isp, "net.ipv4.ip_forward", 1);
  // Every inside host reaches the Internet as the one public address, so the per-destination
  // ICMP error rate limit would answer only one of several parallel traceroutes.
  for (const n of [ns.isp, ns.inet]) await lab.sysctl(n, "net.ipv4.icmp_ratelimit", 0);
  if (opts.mode === "pool") await lab.addRoute(ns.isp, poolPrefix, "via", "198.51.100.2");

  return {
    lab,
    mode: opts.mode,
    ns,
    inside,
    insideNet: "192.168.0.0/24",
    gate: {
      ns: ns.gate,
      lan: "lan0",
      lanAddr: "192.168.0.1",
      lanPorts,
      wan: "wan0",
      wanAddr: "198.51.100.2",
      wanPrefixLen: 30,
    },
    isp: { ns: ns.isp, toGate: "198.51.100.1", toGateDev: "down0", toInet: "203.0.113.1", toInetDev: "up0" },
    inet: { ns: ns.inet, addr: "203.0.113.10", dev: "eth0" },
    publicAddr: opts.mode === "pool" ? poolPrefix.split("/")[0] : "198.51.100.2",
    pool: opts.mode === "pool" ? [poolPrefix] : [],
    destroy: () => lab.destroy(),
  };
}

/**
 * The gateway namespace's rules, IPv4 routes, proxy entries, sysctls masq touches (rp_filter of
 * every interface) and links, as text: compared before masq and after it, nothing may differ.
 */
export async function gatewaySnapshot(net: MasqNetwork): Promise<string> {
  const ns = net.gate.ns;
  const parts = await Promise.all([
    net.lab.run(ns, ["ip", "rule", "show"]),
    // IPv4 only: IPv6 link-local routes appear on their own while a test runs.
    net.lab.run(ns, ["ip", "-4", "route", "show", "table", "all"]),
    net.lab.run(ns, ["ip", "neigh", "show", "proxy"]),
    net.lab.run(ns, ["sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.accept_local"]),
    net.lab.run(ns, ["sh", "-c", "grep -H . /proc/sys/net/ipv4/conf/*/rp_filter"]),
    net.lab.run(ns, ["ip", "-o", "link", "show"]),
  ]);
  return parts.join("\n---\n");
}

/**
 * The kernel's own NAT on the gateway instead of masq (the benchmark's reference): nftables
 * `masquerade` on wan0, or in pool mode `snat to` the pool address.
 */
export async function enableKernelNat(net: MasqNetwork): Promise<void> {
  const action = net.mode === "pool" ? `snat to ${net.publicAddr}` : "masquerade";
  const ruleset = [
    "table ip nat {",
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    oifname "${net.gate.wan}" ${action}`,
    "  }",
    "}",
    "",
  ].join("\n");
  await net.lab.run(net.gate.ns, ["nft", "-f", "-"], { input: ruleset });
}

export async function disableKernelNat(net: MasqNetwork): Promise<void> {
  const r = await net.lab.exec(net.gate.ns, ["nft", "delete", "table", "ip", "nat"]);
  if (r.code !== 0 && !/No such file/i.test(r.stderr))
    throw new Error(`nft delete table ip nat: ${r.stderr.trim()}`);
}

// ---- process helpers ----

async function nsPids(ns: string): Promise<number[]> {
  const r = await execIn(["ip", "netns", "pids", ns], { timeoutMs: 5000 });
  return r.code === 0 ? parsePids(r.stdout) : [];
}

function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((pid) => pid > 1 && pid !== process.pid);
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let handlersInstalled = false;
let signalsHandledByCaller = false;

/**
 * For a program that handles SIGINT/SIGTERM itself and destroys its labs in order (`masq lab`
 * stops masq with SIGTERM first, so masq undoes its host setup and removes its files): the labs'
 * emergency teardown then leaves signals alone; it still runs when the process exits.
 */
export function handleSignalsInCaller(): void {
  signalsHandledByCaller = true;
}

/** On SIGINT/SIGTERM or exit, destroy every live lab synchronously, then let the process end. */
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalsHandledByCaller) {
      process.once(signal, onSignal);
      return;
    }
    for (const lab of [...liveLabs]) lab.destroySync();
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", () => {
    for (const lab of [...liveLabs]) lab.destroySync();
  });
}
