// `masq run` configuration: a TOML file validated against a schema, overridden by command-line
// flags. Every error names the key (or flag) and the problem; unknown keys are refused, because a
// misspelt key silently ignored is a gateway misconfigured in production.
import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import * as v from "valibot";
import { ALGS } from "../alg/algs.ts";
import { type AlgConfig, defaultAlgConfig } from "../alg/config.ts";
import { MasqError } from "../errors/masq-error.ts";
import { parsePrefix, prefixSize } from "../host/ipv4.ts";
import {
  DEFAULT_FRAGMENT_BUFFER_BYTES,
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
import { ForwardError, type ForwardSpec, parseForward } from "../portmap/forwards.ts";
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
} from "./cgnat-config.ts";
import {
  flowCount,
  flowTimeout,
  fragmentTimeout,
  MSS_CLAMP_HINT,
  mssClampValue,
  perSecond,
  seconds,
} from "./config-values.ts";
import { applyIpv6Section, defaultIpv6Config, type Ipv6Config, ipv6SectionSchema } from "./ipv6-config.ts";
import { parseListen } from "./metrics-http.ts";
import { applyNatLogSection, natLogSectionSchema } from "./nat-log-config.ts";
import { applyUpnpSection, upnpSectionSchema } from "./upnp-config.ts";
import {
  applyWebSection,
  defaultWebConfig,
  listenProblem,
  type WebConfig,
  webPlanProblem,
  webSectionSchema,
} from "./web-config.ts";

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

/** Minimums a configuration may only undercut with `allow_short_timeouts` (tests, labs). */
export const MIN_TIMEOUTS = {
  /** RFC 5382 REQ-5. */
  tcp_established: 7440,
  /** RFC 5382 REQ-5 (transitory: 4 min). */
  tcp_transitory: 240,
  /**
   * RFC 7857 §2.2 lets partially open connections go sooner than the transitory 4 min, but a
   * handshake must survive its retransmissions: the server's SYN-ACK after 1, 3, 7 and 15 s.
   */
  tcp_half_open: 30,
  /** RFC 4787 REQ-5. */
  udp: 120,
  /** RFC 5508 REQ-1. */
  icmp: 60,
} as const;

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
  /** Microseconds the packet loop keeps reading after the last packet before it sleeps (0: off). */
  busyPollUs: number;
  /**
   * Packet loops (worker threads, one TUN queue each; issue 13 part 2). Only 1 is accepted until
   * the workers are wired into `masq run` (docs/design.md, "Several workers").
   */
  workers: number;
  portParity: boolean;
  /** Fixed seed for port allocation (reproducible runs); undefined: a random one at each start. */
  portSeed?: number;
  /** An unsolicited inbound SYN: dropped, or answered after 6 s (RFC 5382 REQ-4). */
  unsolicitedSyn: UnsolicitedSyn;
  /** MSS clamping of SYNs: to the links' MTU − 40 ("pmtu"), to a number, or "off". */
  mssClamp: MssClampSetting;
  timeouts: Timeouts;
  limits: {
    maxFlows: number;
    maxFlowsPerHost: number;
    /** Inbound half-open TCP connections in all; undefined: a quarter of maxFlows. */
    maxHalfOpen?: number;
    /** Outside ports one inside host may hold per protocol; 0: the default share of the range. */
    maxPortsPerHost: number;
    maxHosts: number;
    /** Bytes of fragments held for their first fragment (src/nat/fragment-store.ts). */
    fragmentBufferBytes: number;
    /** New flows per second per inside host, and for the whole gateway (0: no limit). */
    newFlowsPerSecPerHost: number;
    newFlowsPerSec: number;
  };
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
    rps: true,
    datapathCpu: "auto",
    datapathPriority: "realtime",
    busyPollUs: 0,
    workers: 1,
    portParity: false,
    unsolicitedSyn: "drop",
    mssClamp: "pmtu",
    timeouts: { ...DEFAULT_TIMEOUTS },
    limits: {
      maxFlows: 262_144,
      maxFlowsPerHost: 8192,
      maxPortsPerHost: 0,
      maxHosts: 4096,
      fragmentBufferBytes: DEFAULT_FRAGMENT_BUFFER_BYTES,
      newFlowsPerSecPerHost: 0,
      newFlowsPerSec: 0,
    },
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

/** The longest busy poll: beyond a few ms it is a spinning CPU, not a shorter wake-up. */
export const MAX_BUSY_POLL_US = 10_000;

/**
 * `workers`: the steering, port slices and control channel exist (src/datapath/steering*.ts,
 * shard-channel.ts), but `masq run` does not start worker threads yet: more than one is refused
 * rather than silently run on one.
 */
function checkWorkers(n: number, where: string): number {
  if (n > 1)
    throw new ConfigError(
      where,
      `${n} workers: not yet; masq runs one packet loop until the worker threads are built (issue 13 part 2), so use 1`,
    );
  return n;
}

/**
 * `datapath_priority`: the packet loop's thread under SCHED_FIFO ("realtime", the default), so a
 * wake-up preempts ordinary work on its CPU as the kernel's own forwarding (softirq) does, or
 * under the ordinary scheduler with everything else ("normal").
 */
export const DATAPATH_PRIORITIES = ["realtime", "normal"] as const;
export type DatapathPriority = (typeof DATAPATH_PRIORITIES)[number];

/** `datapath_cpu`: "auto" (pinned when there are 2 or more CPUs), "off", or a CPU number. */
export type DatapathCpuSetting = "auto" | "off" | number;

/** "auto", "off" or a CPU number, from the config file or the command line. */
export function parseDatapathCpu(value: string | number, where: string): DatapathCpuSetting {
  if (value === "auto" || value === "off") return value;
  const n = typeof value === "number" ? value : /^\d{1,4}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 8191)
    throw new ConfigError(where, `${JSON.stringify(value)} must be "auto", "off" or a CPU number`);
  return n;
}

function mssClamp(value: string | number, where: string): MssClampSetting {
  const setting = mssClampValue(value);
  if (setting === undefined) throw new ConfigError(where, `${JSON.stringify(value)} ${MSS_CLAMP_HINT}`);
  return setting;
}

/**
 * A configuration problem: the key or flag it concerns ("m.toml: limits.max_flows", "--ports")
 * and what is wrong with it, as fields (the message is the two joined).
 */
export class ConfigError extends MasqError {
  constructor(
    readonly key: string,
    readonly problem: string,
  ) {
    super("MASQ_ERR_CONFIG_INVALID", `${key}: ${problem}`);
    this.name = "ConfigError";
  }
}

export const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;
const ifname = v.pipe(v.string(), v.regex(IFNAME, "must be an interface name (1-15 letters, digits, _.:-)"));
const portsValue = v.union([v.number(), v.string()], 'must be a port or a range like "1000-2000"');
const forwardSchema = v.strictObject({
  outside: v.string('must be "[address:]port[-port]/proto", e.g. "8080/tcp"'),
  inside: v.string('must be "host[:port]", e.g. "192.168.0.2:80"'),
  remote: v.optional(v.string()),
  note: v.optional(v.string()),
});
const RULE_DIRECTIONS = ["inbound", "outbound", "any"] as const;
const RULE_ACTIONS = ["accept", "drop", "reject"] as const;
const RULE_PROTOCOLS = ["tcp", "udp", "icmp", "any"] as const;
const ruleSchema = v.strictObject({
  name: v.optional(v.string()),
  direction: v.picklist(RULE_DIRECTIONS, `must be one of ${RULE_DIRECTIONS.join(", ")}`),
  action: v.picklist(RULE_ACTIONS, `must be one of ${RULE_ACTIONS.join(", ")}`),
  protocol: v.optional(v.picklist(RULE_PROTOCOLS, `must be one of ${RULE_PROTOCOLS.join(", ")}`)),
  source: v.optional(v.string()),
  destination: v.optional(v.string()),
  source_ports: v.optional(portsValue),
  destination_ports: v.optional(portsValue),
});

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
    v.pipe(
      v.number(),
      v.integer("must be a whole number of microseconds"),
      v.minValue(0),
      v.maxValue(MAX_BUSY_POLL_US, `must be at most ${MAX_BUSY_POLL_US} microseconds`),
    ),
  ),
  datapath_cpu: v.optional(v.union([v.string(), v.number()], 'must be "auto", "off" or a CPU number')),
  datapath_priority: v.optional(
    v.picklist(DATAPATH_PRIORITIES, `must be one of ${DATAPATH_PRIORITIES.join(", ")}`),
  ),
  workers: v.optional(v.pipe(v.number(), v.integer("must be a whole number of workers"), v.minValue(1))),
  port_parity: v.optional(v.boolean()),
  allow_low_ports: v.optional(v.boolean()),
  port_seed: v.optional(
    v.pipe(v.number(), v.integer("must be a whole number"), v.minValue(0), v.maxValue(0xffffffff)),
  ),
  unsolicited_syn: v.optional(v.picklist(UNSOLICITED_SYN, `must be one of ${UNSOLICITED_SYN.join(", ")}`)),
  mss_clamp: v.optional(v.union([v.string(), v.number()], MSS_CLAMP_HINT)),
  timeouts: v.optional(
    v.strictObject({
      allow_short_timeouts: v.optional(v.boolean()),
      tcp_established: v.optional(flowTimeout),
      tcp_transitory: v.optional(flowTimeout),
      tcp_half_open: v.optional(flowTimeout),
      tcp_closed: v.optional(flowTimeout),
      udp: v.optional(flowTimeout),
      icmp: v.optional(flowTimeout),
      generic: v.optional(flowTimeout),
      fragment: v.optional(fragmentTimeout),
    }),
  ),
  limits: v.optional(
    v.strictObject({
      max_flows: v.optional(flowCount(16)),
      max_flows_per_host: v.optional(flowCount(1)),
      max_half_open: v.optional(flowCount(1)),
      max_ports_per_host: v.optional(
        v.pipe(
          v.number(),
          v.integer("must be a whole number of ports"),
          v.minValue(1, "must be at least 1"),
          v.maxValue(65_535, "must be at most 65535"),
        ),
      ),
      max_hosts: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_048_576))),
      fragment_buffer_bytes: v.optional(
        v.pipe(
          v.number(),
          v.integer("must be a whole number of bytes"),
          v.minValue(65_536, "must be at least 65536 (64 KiB)"),
          v.maxValue(268_435_456, "must be at most 268435456 (256 MiB)"),
        ),
      ),
      new_flows_per_sec_per_host: v.optional(perSecond),
      new_flows_per_sec: v.optional(perSecond),
    }),
  ),
  forward: v.optional(v.array(forwardSchema, "must be an array of tables ([[forward]])")),
  firewall: v.optional(
    v.strictObject({
      rule: v.optional(v.array(ruleSchema, "must be an array of tables ([[firewall.rule]])")),
    }),
  ),
  alg: v.optional(algSectionSchema(ALGS)),
  portmap: v.optional(
    v.strictObject({
      enabled: v.optional(v.boolean()),
      natpmp: v.optional(v.boolean()),
      pcp: v.optional(v.boolean()),
      min_lifetime: v.optional(v.pipe(seconds, v.maxValue(86_400 * 7, "must be at most a week"))),
      max_lifetime: v.optional(v.pipe(seconds, v.maxValue(86_400 * 7, "must be at most a week"))),
      max_per_host: v.optional(
        v.pipe(v.number(), v.integer("must be a whole number"), v.minValue(1), v.maxValue(65_535)),
      ),
      max_mappings: v.optional(
        v.pipe(v.number(), v.integer("must be a whole number"), v.minValue(1), v.maxValue(65_535)),
      ),
      require_neighbour: v.optional(v.boolean()),
      allowed_hosts: v.optional(v.array(v.string(), "must be a list of addresses or prefixes")),
      third_party: v.optional(v.boolean()),
    }),
  ),
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
  /** --datapath-priority realtime|normal. */
  datapathPriority?: string;
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
  let allowShort = false;
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
    if (f.port_parity !== undefined) c.portParity = f.port_parity;
    if (f.allow_low_ports !== undefined) c.allowLowPorts = f.allow_low_ports;
    if (f.port_seed !== undefined) c.portSeed = f.port_seed;
    if (f.unsolicited_syn !== undefined) c.unsolicitedSyn = f.unsolicited_syn;
    if (f.mss_clamp !== undefined) c.mssClamp = mssClamp(f.mss_clamp, `${src}: mss_clamp`);
    const t = f.timeouts;
    if (t) {
      allowShort = t.allow_short_timeouts ?? false;
      const T = c.timeouts;
      if (t.tcp_established !== undefined) T.tcpEstablishedSec = t.tcp_established;
      if (t.tcp_transitory !== undefined) T.tcpTransitorySec = t.tcp_transitory;
      if (t.tcp_half_open !== undefined) T.tcpHalfOpenSec = t.tcp_half_open;
      if (t.tcp_closed !== undefined) T.tcpClosedSec = t.tcp_closed;
      if (t.udp !== undefined) T.udpSec = t.udp;
      if (t.icmp !== undefined) T.icmpSec = t.icmp;
      if (t.generic !== undefined) T.genericSec = t.generic;
      if (t.fragment !== undefined) T.fragmentSec = t.fragment;
      if (!allowShort) checkTimeoutMinimums(t, src);
    }
    const l = f.limits;
    if (l) {
      if (l.max_flows !== undefined) c.limits.maxFlows = l.max_flows;
      if (l.max_flows_per_host !== undefined) c.limits.maxFlowsPerHost = l.max_flows_per_host;
      if (l.max_half_open !== undefined) {
        if (l.max_half_open > c.limits.maxFlows)
          throw new ConfigError(
            `${src}: limits.max_half_open`,
            `${l.max_half_open} is above limits.max_flows (${c.limits.maxFlows})`,
          );
        c.limits.maxHalfOpen = l.max_half_open;
      }
      if (l.max_ports_per_host !== undefined) c.limits.maxPortsPerHost = l.max_ports_per_host;
      if (l.max_hosts !== undefined) c.limits.maxHosts = l.max_hosts;
      if (l.fragment_buffer_bytes !== undefined) c.limits.fragmentBufferBytes = l.fragment_buffer_bytes;
      if (l.new_flows_per_sec_per_host !== undefined)
        c.limits.newFlowsPerSecPerHost = l.new_flows_per_sec_per_host;
      if (l.new_flows_per_sec !== undefined) c.limits.newFlowsPerSec = l.new_flows_per_sec;
    }
    if (f.forward !== undefined)
      c.forwards = f.forward.map((t, i) => {
        try {
          return parseForward(t, `forward.${i}`);
        } catch (err) {
          if (err instanceof ForwardError && err.key !== undefined)
            throw new ConfigError(`${src}: ${err.key}`, err.problem);
          throw err;
        }
      });
    if (f.firewall?.rule !== undefined)
      c.firewall = f.firewall.rule.map((r, i) => firewallRule(r, `${src}: firewall.rule.${i}`));
    const pm = f.portmap;
    if (pm) {
      const P = c.portmap;
      if (pm.enabled !== undefined) P.enabled = pm.enabled;
      if (pm.natpmp !== undefined) P.natpmp = pm.natpmp;
      if (pm.pcp !== undefined) P.pcp = pm.pcp;
      if (pm.min_lifetime !== undefined) P.minLifetime = pm.min_lifetime;
      if (pm.max_lifetime !== undefined) P.maxLifetime = pm.max_lifetime;
      if (pm.max_per_host !== undefined) P.maxPerHost = pm.max_per_host;
      if (pm.max_mappings !== undefined) P.maxMappings = pm.max_mappings;
      if (pm.require_neighbour !== undefined) P.requireNeighbour = pm.require_neighbour;
      if (pm.allowed_hosts !== undefined)
        P.allowedHosts = pm.allowed_hosts.map((h, i) =>
          prefixNumbers(h, `${src}: portmap.allowed_hosts.${i}`),
        );
      if (pm.third_party !== undefined) P.thirdParty = pm.third_party;
      if (P.minLifetime > P.maxLifetime)
        throw new ConfigError(
          `${src}: portmap.min_lifetime`,
          `${P.minLifetime} s is above portmap.max_lifetime (${P.maxLifetime} s)`,
        );
    }
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
  if (flags.busyPoll !== undefined) {
    const us = /^\d{1,5}$/.test(flags.busyPoll) ? Number(flags.busyPoll) : Number.NaN;
    if (!(us <= MAX_BUSY_POLL_US))
      throw new ConfigError(
        "--busy-poll",
        `${JSON.stringify(flags.busyPoll)} must be 0-${MAX_BUSY_POLL_US} microseconds`,
      );
    c.busyPollUs = us;
  }
  if (flags.datapathCpu !== undefined) c.datapathCpu = parseDatapathCpu(flags.datapathCpu, "--datapath-cpu");
  if (flags.datapathPriority !== undefined) {
    const p = DATAPATH_PRIORITIES.find((x) => x === flags.datapathPriority);
    if (p === undefined)
      throw new ConfigError(
        "--datapath-priority",
        `${JSON.stringify(flags.datapathPriority)} must be one of ${DATAPATH_PRIORITIES.join(", ")}`,
      );
    c.datapathPriority = p;
  }
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
    const pool = c.addresses.reduce((n, a) => n + prefixSize(parsePrefix(a)), 0);
    const plan = deterministicPlan(c.cgnat.deterministicInside, pool, c.ports.first, c.ports.last);
    if (typeof plan === "string") throw new ConfigError(cgnatInsideKey, plan);
  }
  return c;
}

/** The outside TUN's default name: the inside TUN's with this suffix. */
export const OUTSIDE_TUN_SUFFIX = "-out";
const MAX_IFNAME = 15;

/** `<tun>-out`, or undefined when that is longer than an interface name may be. */
export function outsideTunName(tun: string): string | undefined {
  const name = `${tun}${OUTSIDE_TUN_SUFFIX}`;
  return name.length <= MAX_IFNAME ? name : undefined;
}

/** The outside TUN's name: the one given (validated), else derived from the inside TUN's. */
export function resolveOutsideTun(tun: string, given?: { name: string; where: string }): string {
  if (given) {
    if (!IFNAME.test(given.name))
      throw new ConfigError(given.where, `${JSON.stringify(given.name)} is not an interface name`);
    if (given.name === tun) throw new ConfigError(given.where, `must differ from the inside TUN ${tun}`);
    return given.name;
  }
  const derived = outsideTunName(tun);
  if (derived === undefined)
    throw new ConfigError(
      "tun",
      `${JSON.stringify(tun)} is too long to name the outside TUN after it ` +
        `(${tun}${OUTSIDE_TUN_SUFFIX} has ${tun.length + OUTSIDE_TUN_SUFFIX.length} characters, ` +
        `at most ${MAX_IFNAME}): use a shorter tun or set tun_outside (--tun-outside)`,
    );
  return derived;
}

function firewallRule(r: v.InferOutput<typeof ruleSchema>, where: string): FirewallRule {
  const rule: FirewallRule = { direction: r.direction, action: r.action };
  if (r.name !== undefined) rule.name = r.name;
  if (r.protocol !== undefined) rule.protocol = r.protocol;
  const prefix = (text: string, key: string) => prefixNumbers(text, `${where}.${key}`);
  if (r.source !== undefined) rule.source = prefix(r.source, "source");
  if (r.destination !== undefined) rule.destination = prefix(r.destination, "destination");
  for (const [key, value] of [
    ["source_ports", r.source_ports],
    ["destination_ports", r.destination_ports],
  ] as const) {
    if (value === undefined) continue;
    if (r.protocol !== "tcp" && r.protocol !== "udp")
      throw new ConfigError(`${where}.${key}`, 'ports need protocol = "tcp" or "udp"');
    const range = ruleRange(String(value), `${where}.${key}`);
    if (key === "source_ports") rule.sourcePorts = range;
    else rule.destinationPorts = range;
  }
  return rule;
}

/** "22" or "1000-2000" (any size, unlike masq's own port range). */
function ruleRange(text: string, where: string): { first: number; last: number } {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  const first = Number(m?.[1]);
  const last = m?.[2] === undefined ? first : Number(m[2]);
  if (!m || first > last || last > 65535)
    throw new ConfigError(where, `${JSON.stringify(text)} is not a port or a range like 1000-2000 (0-65535)`);
  return { first, last };
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

function checkTimeoutMinimums(t: NonNullable<FileConfig["timeouts"]>, src: string): void {
  for (const key of Object.keys(MIN_TIMEOUTS) as Array<keyof typeof MIN_TIMEOUTS>) {
    const value = t[key];
    if (value !== undefined && value < MIN_TIMEOUTS[key])
      throw new ConfigError(
        `${src}: timeouts.${key}`,
        `${value} s is below the ${key === "tcp_half_open" ? "" : "RFC "}minimum of ${MIN_TIMEOUTS[key]} s (set timeouts.allow_short_timeouts = true for tests)`,
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

/** "61000-65534" or "61000" → range; errors name `where`. */
export function parsePorts(text: string, where: string): { first: number; last: number } {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  if (!m) throw new ConfigError(where, `${JSON.stringify(text)} is not a port range like 61000-65534`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  if (first < 1 || last > 65535 || first > last)
    throw new ConfigError(where, `${text}: ports must be 1-65535 with the first not above the last`);
  if (last - first + 1 < 64)
    throw new ConfigError(where, `${text}: at least 64 ports are needed for a usable NAT`);
  return { first, last };
}

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function validDotted(a: string): boolean {
  const m = DOTTED.exec(a);
  return m?.slice(1).every((o) => Number(o) <= 255) === true;
}

/** An IPv4 address or prefix ("198.51.100.96/29") for the pool. */
export function checkAddress(text: string, where: string): string {
  const s = text.trim();
  const [addr, len] = s.split("/");
  if (
    !validDotted(addr) ||
    (len !== undefined && !(/^\d{1,2}$/.test(len) && Number(len) >= 24 && Number(len) <= 32))
  )
    throw new ConfigError(where, `${JSON.stringify(text)} is not an IPv4 address or a /24../32 prefix`);
  return s;
}

/** An IPv4 prefix (or a bare address, /32) as numbers; errors name `where`. */
function prefixNumbers(text: string, where: string): { addr: number; len: number } {
  const [addr, len] = checkPrefix(text, where).split("/");
  return { addr: addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0), len: Number(len) };
}

/** An IPv4 prefix "a.b.c.d/len" (a bare address means /32). */
export function checkPrefix(text: string, where: string): string {
  const s = text.trim();
  const [addr, len] = s.split("/");
  if (!validDotted(addr) || (len !== undefined && !(/^\d{1,2}$/.test(len) && Number(len) <= 32)))
    throw new ConfigError(where, `${JSON.stringify(text)} is not an IPv4 prefix like 192.168.0.0/24`);
  return len === undefined ? `${addr}/32` : s;
}
