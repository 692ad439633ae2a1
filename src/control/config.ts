// `masq run` configuration: a TOML file validated against a schema, overridden by command-line
// flags. Every error names the key (or flag) and the problem; unknown keys are refused, because a
// misspelt key silently ignored is a gateway misconfigured in production. This file is the list
// of sections, the top-level keys, the flags and the checks across keys; each section's schema
// and how it is applied live in its own module (timeouts-config.ts, limits-config.ts, …).
import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import * as v from "valibot";
import { ALGS } from "../alg/algs.ts";
import { type AlgConfig, defaultAlgConfig } from "../alg/config.ts";
import { parsePrefix, prefixSize } from "../host/ipv4.ts";
import {
  DEFAULT_INTERFACE_PORTS,
  DEFAULT_TIMEOUTS,
  defaultPortRange,
  type Filtering,
  type MssClampSetting,
  type Timeouts,
  type UnsolicitedSyn,
} from "../nat/config.ts";
import { defaultNatLogConfig, type NatLogConfig } from "../natlog/config.ts";
import type { FirewallRule } from "../policy/rules.ts";
import { defaultPortmapConfig, type PortmapConfig } from "../portmap/config.ts";
import type { ForwardSpec } from "../portmap/forwards.ts";
import { defaultUpnpConfig, type UpnpConfig } from "../portmap/upnp/config.ts";
import { addressPlanProblem } from "./address-rules.ts";
import { algSectionSchema, applyAlgSection } from "./alg-config.ts";
import {
  applyCgnatSection,
  blockRangeProblem,
  type CgnatConfig,
  cgnatSectionSchema,
  defaultCgnatConfig,
  deterministicPlan,
  narrowToNode,
} from "./cgnat-config.ts";
import { checkAddress, checkPrefix, parsePorts } from "./config-addresses.ts";
import { ConfigError } from "./config-error.ts";
import { boundedInt, MSS_CLAMP_HINT, mssClampValue } from "./config-values.ts";
import {
  checkWorkers,
  DATAPATH_IOS,
  DATAPATH_PRIORITIES,
  type DatapathCpuSetting,
  type DatapathIo,
  type DatapathPriority,
  MAX_BUSY_POLL_US,
  parseBusyPoll,
  parseDatapathCpu,
  parseDatapathIo,
  parseDatapathPriority,
} from "./datapath-config.ts";
import { firewallRules, firewallSectionSchema } from "./firewall-config.ts";
import { forwardSectionSchema, forwardSpecs } from "./forward-config.ts";
import { IFNAME, ifname, resolveOutsideTun } from "./interface-names.ts";
import { applyIpv6Section, defaultIpv6Config, type Ipv6Config, ipv6SectionSchema } from "./ipv6-config.ts";
import {
  applyLimitsSection,
  defaultLimits,
  type LimitsConfig,
  limitsSectionSchema,
} from "./limits-config.ts";
import { parseListen } from "./metrics-http.ts";
import { applyNatLogSection, natLogSectionSchema } from "./nat-log-config.ts";
import { applyPortmapSection, portmapSectionSchema } from "./portmap-config.ts";
import { applyTimeoutsSection, timeoutsSectionSchema } from "./timeouts-config.ts";
import { applyUpnpSection, upnpSectionSchema } from "./upnp-config.ts";
import {
  applyWebSection,
  defaultWebConfig,
  listenProblem,
  type WebConfig,
  webPlanProblem,
  webSectionSchema,
} from "./web-config.ts";
import { workersConflict } from "./workers-config.ts";

export const FILTERINGS: readonly Filtering[] = [
  "endpoint-independent",
  "address-dependent",
  "address-port-dependent",
];
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["json", "text"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export const UNSOLICITED_SYN: readonly UnsolicitedSyn[] = ["drop", "port-unreachable"];

export interface RunConfig {
  inside: string[];
  outside: string;
  /** Pool mode when non-empty: addresses or prefixes masq owns and no interface holds. */
  addresses: string[];
  /** Networks treated as inside; empty means the connected prefixes of the inside interfaces. */
  insideNetworks: string[];
  ports: { first: number; last: number };
  /** Interface mode: a port range reaching below 1024 (the gateway's own services) is allowed. */
  allowLowPorts: boolean;
  filtering: Filtering;
  /** The inside TUN: what arrives on the inside interfaces. */
  tun: string;
  /** The outside TUN: what masq takes of what arrives on the outside interface (default `<tun>-out`). */
  tunOutside: string;
  controlSocket: string;
  stateDir: string;
  /** IFF_VNET_HDR with TSO/USO: up to 64 KB per read/write. */
  offload: boolean;
  /** Receive Packet Steering on the TUN: the kernel's work on written packets spread over all CPUs. */
  rps: boolean;
  /** Where the packet loop runs (src/datapath/cpu-placement.ts). */
  datapathCpu: DatapathCpuSetting;
  /** The packet loop's scheduling: "realtime" (SCHED_FIFO, as the kernel's softirq) or "normal". */
  datapathPriority: DatapathPriority;
  /** How the loop's batches reach the TUN: io_uring rounds or one syscall per packet. */
  datapathIo: DatapathIo;
  /** Microseconds the packet loop keeps reading after the last packet before it sleeps (0: off). */
  busyPollUs: number;
  /** Packet loops: worker threads, one queue of each TUN each (src/control/workers-config.ts). */
  workers: number;
  portParity: boolean;
  /** Fixed seed for port allocation (reproducible runs); undefined: a random one at each start. */
  portSeed?: number;
  /** An unsolicited inbound SYN: dropped, or answered after 6 s (RFC 5382 REQ-4). */
  unsolicitedSyn: UnsolicitedSyn;
  /** MSS clamping of SYNs: to the links' MTU − 40 ("pmtu"), to a number, or "off". */
  mssClamp: MssClampSetting;
  timeouts: Timeouts;
  limits: LimitsConfig;
  /** Port forwards of the config file (`[[forward]]`). */
  forwards: ForwardSpec[];
  /** Firewall rules (`[[firewall.rule]]`), in order. */
  firewall: FirewallRule[];
  /** NAT-PMP (RFC 6886) and PCP (RFC 6887) on the inside interfaces. */
  portmap: PortmapConfig;
  /** UPnP IGD on the inside interfaces (shares portmap's lease table and per-host cap). */
  upnp: UpnpConfig;
  /** Application-level gateways (`[alg]`, one `[alg.<name>]` per ALG of src/alg/algs.ts). */
  alg: AlgConfig;
  log: { level: LogLevel; format: LogFormat };
  /** Prometheus scrape endpoint over TCP (`[metrics] listen`, --metrics); undefined: off. */
  metrics: { listen?: string };
  /** NAT event logging (`[nat_log]`: syslog, IPFIX); off unless a target is set. */
  natLog: NatLogConfig;
  /** IPv6 simple security (`[ipv6]`, RFC 6092). */
  ipv6: Ipv6Config;
  /** Carrier-grade NAT (`[cgnat]`): port blocks; off unless `port_block` is set. */
  cgnat: CgnatConfig;
  /** The live web dashboard (`[web]`, --web); off unless `listen` is set. */
  web: WebConfig;
  /** The config file read, if any: start-up checks name its keys with it. */
  configFile?: string;
}

export const DEFAULT_CONTROL_SOCKET = "/run/masq/masq.sock";

export function defaultRunConfig(): RunConfig {
  return {
    inside: [],
    outside: "",
    addresses: [],
    insideNetworks: [],
    // Interface mode's; resolveRunConfig gives pool mode its own when `ports` is not set.
    ports: { ...DEFAULT_INTERFACE_PORTS },
    allowLowPorts: false,
    filtering: "address-dependent",
    tun: "masq0",
    tunOutside: "masq0-out",
    controlSocket: DEFAULT_CONTROL_SOCKET,
    stateDir: "/run/masq",
    offload: true,
    // Off: on the 2-core VM every figure of bench:e2e was better without it (docs/design.md).
    rps: false,
    datapathCpu: "auto",
    datapathPriority: "realtime",
    datapathIo: "auto",
    busyPollUs: 0,
    workers: 1,
    portParity: false,
    unsolicitedSyn: "drop",
    mssClamp: "pmtu",
    timeouts: { ...DEFAULT_TIMEOUTS },
    limits: defaultLimits(),
    forwards: [],
    firewall: [],
    portmap: defaultPortmapConfig(),
    upnp: defaultUpnpConfig(),
    alg: defaultAlgConfig(ALGS),
    log: { level: "info", format: "text" },
    metrics: {},
    natLog: defaultNatLogConfig(),
    ipv6: defaultIpv6Config(),
    cgnat: defaultCgnatConfig(),
    web: defaultWebConfig(),
  };
}

function mssClamp(value: string | number, where: string): MssClampSetting {
  const setting = mssClampValue(value);
  if (setting === undefined) throw new ConfigError(where, `${JSON.stringify(value)} ${MSS_CLAMP_HINT}`);
  return setting;
}

const fileSchema = v.strictObject({
  inside: v.optional(v.union([ifname, v.array(ifname)], "must be an interface name or a list of them")),
  outside: v.optional(ifname),
  addresses: v.optional(v.array(v.string())),
  inside_networks: v.optional(v.array(v.string())),
  ports: v.optional(v.string()),
  filtering: v.optional(v.picklist(FILTERINGS, `must be one of ${FILTERINGS.join(", ")}`)),
  tun: v.optional(ifname),
  tun_outside: v.optional(ifname),
  control_socket: v.optional(v.pipe(v.string(), v.startsWith("/", "must be an absolute path"))),
  state_dir: v.optional(v.pipe(v.string(), v.startsWith("/", "must be an absolute path"))),
  offload: v.optional(v.boolean()),
  rps: v.optional(v.boolean()),
  busy_poll_us: v.optional(
    boundedInt("microseconds", 0, MAX_BUSY_POLL_US, {
      max: `must be at most ${MAX_BUSY_POLL_US} microseconds`,
    }),
  ),
  datapath_cpu: v.optional(v.union([v.string(), v.number()], 'must be "auto", "off" or a CPU number')),
  datapath_priority: v.optional(
    v.picklist(DATAPATH_PRIORITIES, `must be one of ${DATAPATH_PRIORITIES.join(", ")}`),
  ),
  datapath_io: v.optional(v.picklist(DATAPATH_IOS, `must be one of ${DATAPATH_IOS.join(", ")}`)),
  workers: v.optional(v.union([v.string(), v.number()], 'must be "auto" or a whole number of workers')),
  port_parity: v.optional(v.boolean()),
  allow_low_ports: v.optional(v.boolean()),
  port_seed: v.optional(boundedInt("", 0, 0xffffffff)),
  unsolicited_syn: v.optional(v.picklist(UNSOLICITED_SYN, `must be one of ${UNSOLICITED_SYN.join(", ")}`)),
  mss_clamp: v.optional(v.union([v.string(), v.number()], MSS_CLAMP_HINT)),
  timeouts: v.optional(timeoutsSectionSchema),
  limits: v.optional(limitsSectionSchema),
  forward: v.optional(forwardSectionSchema),
  firewall: v.optional(firewallSectionSchema),
  alg: v.optional(algSectionSchema(ALGS)),
  portmap: v.optional(portmapSectionSchema),
  upnp: v.optional(upnpSectionSchema),
  nat_log: v.optional(natLogSectionSchema),
  ipv6: v.optional(ipv6SectionSchema),
  cgnat: v.optional(cgnatSectionSchema),
  web: v.optional(webSectionSchema),
  metrics: v.optional(
    v.strictObject({
      listen: v.optional(v.string('must be "address:port", e.g. "127.0.0.1:9753"')),
    }),
  ),
  log: v.optional(
    v.strictObject({
      level: v.optional(v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`)),
      format: v.optional(v.picklist(LOG_FORMATS, `must be one of ${LOG_FORMATS.join(", ")}`)),
    }),
  ),
});
type FileConfig = v.InferOutput<typeof fileSchema>;

/** Command-line flags of `masq run`, as commander hands them over (all optional). */
export interface RunFlags {
  inside?: string[];
  outside?: string;
  address?: string[];
  ports?: string;
  filtering?: string;
  config?: string;
  tun?: string;
  tunOutside?: string;
  socket?: string;
  offload?: boolean;
  rps?: boolean;
  /** --datapath-cpu auto|off|<n>. */
  datapathCpu?: string;
  /** --busy-poll <us>. */
  busyPoll?: string;
  /** --workers auto|<n>. */
  workers?: string;
  /** --datapath-priority realtime|normal. */
  datapathPriority?: string;
  /** --datapath-io auto|uring|syscalls. */
  datapathIo?: string;
  logLevel?: string;
  logFormat?: string;
  /** --metrics <address:port>: serve Prometheus metrics over HTTP. */
  metrics?: string;
  /** --portmap: NAT-PMP and PCP on (as `[portmap] enabled = true`). */
  portmap?: boolean;
  /** --mss-clamp pmtu|off|<bytes>. */
  mssClamp?: string;
  /** --upnp: UPnP IGD on (as `[upnp] enabled = true`). */
  upnp?: boolean;
  /** --web <address:port>: serve the live dashboard (as `[web] listen`). */
  web?: string;
}

/** Parse and validate TOML text; `source` names the file in errors. */
export function parseConfigText(text: string, source: string): FileConfig {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new ConfigError(source, `not valid TOML: ${(err as Error).message.split("\n")[0]}`);
  }
  const r = v.safeParse(fileSchema, raw);
  if (!r.success) {
    const issue = r.issues[0];
    const key = v.getDotPath(issue) ?? "(top level)";
    // A strict object reports both unknown keys (expected "never") and missing required ones.
    const problem =
      issue.type !== "strict_object"
        ? issue.message
        : issue.expected === "never"
          ? "unknown key (see the config reference in the README)"
          : "missing (required)";
    throw new ConfigError(`${source}: ${key}`, problem);
  }
  return r.output;
}

/** Build the run configuration: defaults, then the file (if any), then flags; validated as a whole. */
export function resolveRunConfig(flags: RunFlags, readFile: (p: string) => string = readText): RunConfig {
  const c = defaultRunConfig();
  let tunOutside: { name: string; where: string } | undefined;
  /** The key or flag that set each of these last, for the checks across keys at the end. */
  let portsKey = "--ports";
  let portsGiven = false;
  let webKey = "web.listen";
  let portBlockKey = "cgnat.port_block";
  let cgnatInsideKey = "cgnat.inside";
  let addressesKey = "--address";
  let insideNetworksKey = "inside_networks";
  if (flags.config) {
    const f = parseConfigText(readFile(flags.config), flags.config);
    const src = flags.config;
    c.configFile = src;
    portsKey = `${src}: ports`;
    addressesKey = `${src}: addresses`;
    insideNetworksKey = `${src}: inside_networks`;
    if (f.inside !== undefined) c.inside = Array.isArray(f.inside) ? f.inside : [f.inside];
    if (f.outside !== undefined) c.outside = f.outside;
    if (f.addresses !== undefined) c.addresses = f.addresses.map((a) => checkAddress(a, `${src}: addresses`));
    if (f.inside_networks !== undefined)
      c.insideNetworks = f.inside_networks.map((p) => checkPrefix(p, `${src}: inside_networks`));
    if (f.ports !== undefined) {
      c.ports = parsePorts(f.ports, `${src}: ports`);
      portsGiven = true;
    }
    if (f.filtering !== undefined) c.filtering = f.filtering;
    if (f.tun !== undefined) c.tun = f.tun;
    if (f.tun_outside !== undefined) tunOutside = { name: f.tun_outside, where: `${src}: tun_outside` };
    if (f.control_socket !== undefined) c.controlSocket = f.control_socket;
    if (f.state_dir !== undefined) c.stateDir = f.state_dir;
    if (f.offload !== undefined) c.offload = f.offload;
    if (f.rps !== undefined) c.rps = f.rps;
    if (f.busy_poll_us !== undefined) c.busyPollUs = f.busy_poll_us;
    if (f.workers !== undefined) c.workers = checkWorkers(f.workers, `${src}: workers`);
    if (f.datapath_cpu !== undefined)
      c.datapathCpu = parseDatapathCpu(f.datapath_cpu, `${src}: datapath_cpu`);
    if (f.datapath_priority !== undefined) c.datapathPriority = f.datapath_priority;
    if (f.datapath_io !== undefined) c.datapathIo = f.datapath_io;
    if (f.port_parity !== undefined) c.portParity = f.port_parity;
    if (f.allow_low_ports !== undefined) c.allowLowPorts = f.allow_low_ports;
    if (f.port_seed !== undefined) c.portSeed = f.port_seed;
    if (f.unsolicited_syn !== undefined) c.unsolicitedSyn = f.unsolicited_syn;
    if (f.mss_clamp !== undefined) c.mssClamp = mssClamp(f.mss_clamp, `${src}: mss_clamp`);
    if (f.timeouts) applyTimeoutsSection(c.timeouts, f.timeouts, src);
    if (f.limits) applyLimitsSection(c.limits, f.limits, src);
    if (f.forward !== undefined) c.forwards = forwardSpecs(f.forward, src);
    if (f.firewall?.rule !== undefined) c.firewall = firewallRules(f.firewall.rule, src);
    if (f.portmap) applyPortmapSection(c.portmap, f.portmap, src);
    if (f.upnp) {
      const bad = applyUpnpSection(c.upnp, f.upnp);
      if (bad) throw new ConfigError(`${src}: ${bad.key}`, bad.problem);
    }
    if (f.ipv6) {
      const bad = applyIpv6Section(c.ipv6, f.ipv6);
      if (bad) throw new ConfigError(`${src}: ${bad.key}`, bad.problem);
    }
    if (f.nat_log) {
      const bad = applyNatLogSection(c.natLog, f.nat_log);
      if (bad) throw new ConfigError(`${src}: ${bad.key}`, bad.problem);
    }
    if (f.cgnat) {
      const bad = applyCgnatSection(c.cgnat, f.cgnat);
      if (bad) throw new ConfigError(`${src}: ${bad.key}`, bad.problem);
      if (f.cgnat.port_block !== undefined) portBlockKey = `${src}: cgnat.port_block`;
      if (f.cgnat.inside !== undefined) cgnatInsideKey = `${src}: cgnat.inside`;
    }
    if (f.web) {
      const bad = applyWebSection(c.web, f.web);
      if (bad) throw new ConfigError(`${src}: ${bad.key}`, bad.problem);
      if (f.web.listen !== undefined) webKey = `${src}: web.listen`;
    }
    if (f.alg) {
      const conflict = applyAlgSection(ALGS, c.alg, f.alg);
      if (conflict) throw new ConfigError(`${src}: ${conflict.key}`, conflict.problem);
    }
    if (f.log?.level !== undefined) c.log.level = f.log.level;
    if (f.log?.format !== undefined) c.log.format = f.log.format;
    if (f.metrics?.listen !== undefined)
      c.metrics.listen = checkListen(f.metrics.listen, `${src}: metrics.listen`);
  }
  if (flags.inside !== undefined)
    c.inside = flags.inside.flatMap((s) => s.split(",")).filter((s) => s !== "");
  if (flags.outside !== undefined) c.outside = flags.outside;
  if (flags.address !== undefined && flags.address.length > 0)
    c.addresses = flags.address.flatMap((s) => s.split(",")).map((a) => checkAddress(a, "--address"));
  if (flags.address !== undefined && flags.address.length > 0) addressesKey = "--address";
  if (flags.ports !== undefined) {
    c.ports = parsePorts(flags.ports, "--ports");
    portsKey = "--ports";
    portsGiven = true;
  }
  if (flags.filtering !== undefined) {
    if (!(FILTERINGS as readonly string[]).includes(flags.filtering))
      throw new ConfigError(
        "--filtering",
        `must be one of ${FILTERINGS.join(", ")} (got ${flags.filtering})`,
      );
    c.filtering = flags.filtering as Filtering;
  }
  if (flags.tun !== undefined) c.tun = flags.tun;
  if (flags.tunOutside !== undefined) tunOutside = { name: flags.tunOutside, where: "--tun-outside" };
  if (flags.socket !== undefined) c.controlSocket = flags.socket;
  if (flags.offload !== undefined) c.offload = flags.offload;
  if (flags.rps !== undefined) c.rps = flags.rps;
  if (flags.busyPoll !== undefined) c.busyPollUs = parseBusyPoll(flags.busyPoll, "--busy-poll");
  if (flags.datapathCpu !== undefined) c.datapathCpu = parseDatapathCpu(flags.datapathCpu, "--datapath-cpu");
  if (flags.workers !== undefined) c.workers = checkWorkers(flags.workers, "--workers");
  if (flags.datapathPriority !== undefined)
    c.datapathPriority = parseDatapathPriority(flags.datapathPriority, "--datapath-priority");
  if (flags.datapathIo !== undefined) c.datapathIo = parseDatapathIo(flags.datapathIo, "--datapath-io");
  if (flags.metrics !== undefined) c.metrics.listen = checkListen(flags.metrics, "--metrics");
  if (flags.portmap) c.portmap.enabled = true;
  if (flags.mssClamp !== undefined) c.mssClamp = mssClamp(flags.mssClamp, "--mss-clamp");
  if (flags.upnp) c.upnp.enabled = true;
  if (flags.web !== undefined) {
    const bad = listenProblem(flags.web);
    if (bad) throw new ConfigError("--web", bad);
    c.web.listen = flags.web.trim();
    webKey = "--web";
  }
  const webBad = webPlanProblem(c.web, webKey);
  if (webBad) throw new ConfigError(webBad.key, webBad.problem);
  if (flags.logLevel !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(flags.logLevel))
      throw new ConfigError("--log-level", `must be one of ${LOG_LEVELS.join(", ")}`);
    c.log.level = flags.logLevel as LogLevel;
  }
  const envFormat = process.env.MASQ_LOG_FORMAT;
  const format = flags.logFormat ?? envFormat;
  if (format !== undefined) {
    if (!(LOG_FORMATS as readonly string[]).includes(format))
      throw new ConfigError(flags.logFormat ? "--log-format" : "MASQ_LOG_FORMAT", "must be json or text");
    c.log.format = format as LogFormat;
  }

  if (c.inside.length === 0)
    throw new ConfigError("--inside", "missing: name the inside (LAN) interface(s), e.g. --inside eth1");
  for (const i of c.inside)
    if (!IFNAME.test(i)) throw new ConfigError("--inside", `${JSON.stringify(i)} is not an interface name`);
  if (!c.outside)
    throw new ConfigError("--outside", "missing: name the outside (WAN) interface, e.g. --outside eth0");
  if (!IFNAME.test(c.outside))
    throw new ConfigError("--outside", `${JSON.stringify(c.outside)} is not an interface name`);
  if (c.inside.includes(c.outside))
    throw new ConfigError("--inside", `${c.outside} cannot be both an inside and the outside interface`);
  if (!IFNAME.test(c.tun))
    throw new ConfigError("--tun", `${JSON.stringify(c.tun)} is not an interface name`);
  if (c.inside.includes(c.tun) || c.outside === c.tun)
    throw new ConfigError("--tun", `${c.tun} is already used as an inside or outside interface`);
  c.tunOutside = resolveOutsideTun(c.tun, tunOutside);
  if (c.inside.includes(c.tunOutside) || c.outside === c.tunOutside)
    throw new ConfigError(
      tunOutside?.where ?? "--tun",
      `${c.tunOutside} is already used as an inside or outside interface`,
    );
  // Pool mode owns its addresses and so every port (src/nat/config.ts); an explicit range wins.
  if (!portsGiven) c.ports = { ...defaultPortRange(c.addresses.length > 0 ? "pool" : "interface") };
  const bad = addressPlanProblem(c, { portsKey, addressesKey, insideNetworksKey });
  if (bad) throw new ConfigError(bad.key, bad.problem);
  if (c.cgnat.portBlock > 0) {
    const tooBig = blockRangeProblem(c.cgnat.portBlock, c.ports.first, c.ports.last, c.workers);
    if (tooBig) throw new ConfigError(portBlockKey, tooBig);
  }
  if (c.cgnat.deterministicInside !== undefined) {
    if (c.addresses.length === 0)
      throw new ConfigError(
        cgnatInsideKey,
        "deterministic mode needs pool mode's addresses (addresses, --address)",
      );
    if (c.cgnat.scaleOut === undefined) {
      const pool = c.addresses.reduce((n, a) => n + prefixSize(parsePrefix(a)), 0);
      const plan = deterministicPlan(c.cgnat.deterministicInside, pool, c.ports.first, c.ports.last);
      if (typeof plan === "string") throw new ConfigError(cgnatInsideKey, plan);
    } else {
      // Several gateways share the pool: this one owns (and claims on the host) its part alone.
      const nodesKey = `${c.configFile}: cgnat.nodes`;
      const own = narrowToNode(c.cgnat, c.addresses, c.ports, { nodes: nodesKey, inside: cgnatInsideKey });
      if (!Array.isArray(own)) throw new ConfigError(own.key, own.problem);
      c.addresses = own;
    }
  }
  const notYet = workersConflict(c);
  if (notYet) throw new ConfigError(notYet.key, notYet.problem);
  return c;
}

/** A config file's text; a ConfigError naming the file when it cannot be read. */
export function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(
      path,
      `cannot read config file (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
}

function checkListen(text: string, where: string): string {
  try {
    parseListen(text);
  } catch (err) {
    throw new ConfigError(where, (err as Error).message);
  }
  return text.trim();
}
