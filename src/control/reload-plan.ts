// What a reload would change (`masq reload`, SIGHUP): the running configuration against the one
// the file gives now, key by key, each key either live (applied without a restart) or fixed for
// the life of the process. Pure, so the unit tests check every key's class and the all-or-nothing
// rule without a daemon. The keys are the config file's names, as error messages use them.
import { isDeepStrictEqual } from "node:util";
import { ALGS } from "../alg/algs.ts";
import type { RunConfig } from "./config.ts";

/** One setting: where it is in a RunConfig, its name in the file, and whether it changes live. */
export interface ReloadKey {
  /** Dotted path into RunConfig ("timeouts.udpSec"). */
  path: string;
  /** The config file's key ("timeouts.udp"). */
  key: string;
  /**
   * Why it cannot change while masq runs; undefined: it is applied live. A reload that changes
   * one of these changes nothing.
   */
  restart?: string;
}

const TABLES = "sizes tables allocated at start";
const HOST = "the host setup (TUNs, routes, rules, sysctls) is built from it";
const SOCKETS = "sockets and servers opened at start";
/** The IPv6 PCP server reads its settings once, when it starts. */
const IPV6_PCP = "the IPv6 PCP server is set up at start";
const NAT_LOG = "the NAT event log's exporter is built at start";

/** Every setting of RunConfig (a unit test checks that none is missing). */
export const RELOAD_KEYS: readonly ReloadKey[] = [
  { path: "inside", key: "inside", restart: HOST },
  { path: "outside", key: "outside", restart: HOST },
  { path: "addresses", key: "addresses", restart: HOST },
  { path: "insideNetworks", key: "inside_networks", restart: HOST },
  { path: "ports", key: "ports", restart: `${HOST}, and the port allocators` },
  { path: "allowLowPorts", key: "allow_low_ports", restart: HOST },
  { path: "filtering", key: "filtering" },
  { path: "tun", key: "tun", restart: HOST },
  { path: "tunOutside", key: "tun_outside", restart: HOST },
  { path: "controlSocket", key: "control_socket", restart: SOCKETS },
  { path: "stateDir", key: "state_dir", restart: "the host state file is kept there" },
  { path: "offload", key: "offload", restart: "the TUNs are opened with it" },
  { path: "rps", key: "rps", restart: HOST },
  { path: "datapathCpu", key: "datapath_cpu", restart: "the packet loop is placed at start" },
  { path: "datapathPriority", key: "datapath_priority", restart: "the packet loop is placed at start" },
  { path: "datapathIo", key: "datapath_io", restart: "the TUNs' rings are set up at start" },
  { path: "workers", key: "workers", restart: "the TUN queues and their workers are opened at start" },
  { path: "busyPollUs", key: "busy_poll_us" },
  { path: "portParity", key: "port_parity" },
  { path: "portSeed", key: "port_seed", restart: "the port allocators are seeded at start" },
  { path: "unsolicitedSyn", key: "unsolicited_syn" },
  { path: "mssClamp", key: "mss_clamp" },
  { path: "timeouts.tcpEstablishedSec", key: "timeouts.tcp_established" },
  { path: "timeouts.tcpTransitorySec", key: "timeouts.tcp_transitory" },
  { path: "timeouts.tcpHalfOpenSec", key: "timeouts.tcp_half_open" },
  { path: "timeouts.tcpClosedSec", key: "timeouts.tcp_closed" },
  { path: "timeouts.udpSec", key: "timeouts.udp" },
  { path: "timeouts.icmpSec", key: "timeouts.icmp" },
  { path: "timeouts.genericSec", key: "timeouts.generic" },
  { path: "timeouts.fragmentSec", key: "timeouts.fragment" },
  { path: "limits.maxFlows", key: "limits.max_flows", restart: TABLES },
  { path: "limits.maxFlowsPerHost", key: "limits.max_flows_per_host" },
  { path: "limits.maxHalfOpen", key: "limits.max_half_open" },
  { path: "limits.maxPortsPerHost", key: "limits.max_ports_per_host" },
  { path: "limits.maxHosts", key: "limits.max_hosts", restart: TABLES },
  { path: "limits.fragmentBufferBytes", key: "limits.fragment_buffer_bytes", restart: TABLES },
  { path: "limits.newFlowsPerSecPerHost", key: "limits.new_flows_per_sec_per_host" },
  { path: "limits.newFlowsPerSec", key: "limits.new_flows_per_sec" },
  { path: "forwards", key: "forward" },
  { path: "firewall", key: "firewall.rule" },
  { path: "portmap.enabled", key: "portmap.enabled", restart: SOCKETS },
  { path: "portmap.natpmp", key: "portmap.natpmp", restart: SOCKETS },
  { path: "portmap.pcp", key: "portmap.pcp", restart: SOCKETS },
  { path: "portmap.minLifetime", key: "portmap.min_lifetime" },
  { path: "portmap.maxLifetime", key: "portmap.max_lifetime" },
  { path: "portmap.maxPerHost", key: "portmap.max_per_host" },
  { path: "portmap.maxMappings", key: "portmap.max_mappings" },
  { path: "portmap.requireNeighbour", key: "portmap.require_neighbour", restart: SOCKETS },
  { path: "portmap.allowedHosts", key: "portmap.allowed_hosts", restart: SOCKETS },
  { path: "portmap.thirdParty", key: "portmap.third_party" },
  { path: "ipv6.firewall", key: "ipv6.firewall", restart: HOST },
  { path: "ipv6.insideNetworks", key: "ipv6.inside_networks", restart: HOST },
  { path: "ipv6.maxFlows", key: "ipv6.max_flows", restart: TABLES },
  { path: "ipv6.pinholes", key: "ipv6.pinhole", restart: "the IPv6 filter is built at start" },
  { path: "ipv6.pcp", key: "ipv6.pcp", restart: SOCKETS },
  { path: "ipv6.pcpMaxPerHost", key: "ipv6.pcp_max_per_host", restart: IPV6_PCP },
  { path: "ipv6.pcpMaxPinholes", key: "ipv6.pcp_max_pinholes", restart: IPV6_PCP },
  { path: "ipv6.pcpMaxLifetime", key: "ipv6.pcp_max_lifetime", restart: IPV6_PCP },
  { path: "ipv6.pcpThirdParty", key: "ipv6.pcp_third_party", restart: IPV6_PCP },
  { path: "upnp.enabled", key: "upnp.enabled", restart: SOCKETS },
  { path: "upnp.version", key: "upnp.version", restart: "the device description is served from start" },
  { path: "upnp.httpPort", key: "upnp.http_port", restart: SOCKETS },
  {
    path: "upnp.notifyIntervalSec",
    key: "upnp.notify_interval",
    restart: "the announcements are timed at start",
  },
  { path: "upnp.maxLifetimeSec", key: "upnp.max_lifetime" },
  { path: "upnp.allowLowPorts", key: "upnp.allow_low_ports" },
  { path: "upnp.rules", key: "upnp.rules" },
  ...ALGS.map((a) => ({ path: `alg.${a.name}`, key: `alg.${a.name}` })),
  { path: "alg.expectTimeoutSec", key: "alg.expect_timeout" },
  { path: "alg.maxExpectationsPerFlow", key: "alg.max_expectations_per_flow" },
  { path: "alg.maxExpectations", key: "alg.max_expectations" },
  { path: "log.level", key: "log.level" },
  { path: "log.format", key: "log.format", restart: "the log stream is opened with it" },
  { path: "metrics.listen", key: "metrics.listen", restart: SOCKETS },
  { path: "natLog.syslog", key: "nat_log.syslog", restart: SOCKETS },
  { path: "natLog.ipfix", key: "nat_log.ipfix", restart: SOCKETS },
  { path: "natLog.sessions", key: "nat_log.sessions", restart: NAT_LOG },
  { path: "natLog.destination", key: "nat_log.destination", restart: NAT_LOG },
  { path: "natLog.bufferEvents", key: "nat_log.buffer_events", restart: TABLES },
  { path: "natLog.templateIntervalSec", key: "nat_log.template_interval", restart: NAT_LOG },
  { path: "natLog.observationDomain", key: "nat_log.observation_domain", restart: NAT_LOG },
  { path: "cgnat.portBlock", key: "cgnat.port_block", restart: `${TABLES}, and the port blocks` },
  { path: "cgnat.maxBlocksPerHost", key: "cgnat.max_blocks_per_host", restart: TABLES },
  {
    path: "cgnat.deterministicInside",
    key: "cgnat.inside",
    restart: "deterministic mode's ranges are fixed at start",
  },
  {
    path: "cgnat.scaleOut",
    key: "cgnat.nodes",
    restart: "the pool's parts are fixed at start",
  },
  { path: "web.listen", key: "web.listen", restart: SOCKETS },
  { path: "web.tokenFile", key: "web.token_file", restart: "the dashboard reads its token at start" },
  { path: "web.allowChanges", key: "web.allow_changes", restart: "the dashboard is started with it" },
  // Where the configuration came from, not a setting.
  { path: "configFile", key: "--config", restart: "masq re-reads the file it was started with" },
];

/** A setting that differs, with its values before and after. */
export interface KeyChange {
  key: string;
  from: unknown;
  to: unknown;
  /** Set when it cannot change live (see ReloadKey.restart). */
  restart?: string;
}

export interface ReloadPlan {
  /** Settings that differ and are applied live. */
  live: KeyChange[];
  /** Settings that differ and need a restart: if there is one, the reload changes nothing. */
  restart: KeyChange[];
}

/** The value at a dotted path of a RunConfig. */
export function valueAt(c: RunConfig, path: string): unknown {
  let v: unknown = c;
  for (const part of path.split(".")) v = (v as Record<string, unknown> | undefined)?.[part];
  return v;
}

/** What changes from `running` to `next`, key by key. */
export function planReload(running: RunConfig, next: RunConfig): ReloadPlan {
  const plan: ReloadPlan = { live: [], restart: [] };
  for (const k of RELOAD_KEYS) {
    const from = valueAt(running, k.path);
    const to = valueAt(next, k.path);
    if (isDeepStrictEqual(from, to)) continue;
    if (k.restart === undefined) plan.live.push({ key: k.key, from, to });
    else plan.restart.push({ key: k.key, from, to, restart: k.restart });
  }
  return plan;
}

/** "tun: needs a restart (masq0 → masq1: the host setup … is built from it)", one per key. */
export function restartMessage(changes: readonly KeyChange[]): string {
  return changes
    .map((c) => `${c.key}: needs a restart (${shown(c.from)} → ${shown(c.to)}: ${c.restart})`)
    .join("; ");
}

function shown(v: unknown): string {
  if (v === undefined) return "unset";
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
