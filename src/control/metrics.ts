// Prometheus metrics, read from the engine's and datapath's counters at scrape time (nothing is
// counted twice and the hot path never touches prom-client).
import { createRequire } from "node:module";
import type * as PromClient from "prom-client";
import type { EngineStats } from "../nat/view.ts";
import type { RuleHits } from "../policy/rules.ts";

export interface MetricsSource {
  engine(): EngineStats;
  datapath(): Record<string, number>;
  /** Each TUN device's counters by name (reads, writes, errors, the kernel's drops at its queue). */
  devices?(): Record<string, Record<string, number>>;
  /** Firewall rules with their hit counters (none: no rules). */
  firewall?(): RuleHits[];
  /** NAT-PMP/PCP server counters (requests, results, active mappings); absent when it is off. */
  portmap?(): Record<string, number> | undefined;
  /** UPnP IGD server counters (SSDP, SOAP, results, active mappings); absent when it is off. */
  upnp?(): Record<string, number> | undefined;
  /** NAT event log counters (events, records sent, drops by reason); absent when it is off. */
  natLog?(): Record<string, number> | undefined;
  /** Config reloads by result (ok, refused, failed). */
  reloads?(): { ok: number; refused: number; failed: number } | undefined;
}

let prom: typeof PromClient | undefined;

/**
 * prom-client, loaded by the first createMetrics rather than with this module: its ~40 ms of
 * loading then come after the packet loop has started, not in a restart's gap (issue 15).
 */
function promClient(): typeof PromClient {
  prom ??= createRequire(import.meta.url)("prom-client") as typeof PromClient;
  return prom;
}

export function createMetrics(source: MetricsSource): PromClient.Registry {
  const { Counter, collectDefaultMetrics, Gauge, Registry } = promClient();
  const registry = new Registry();
  // The process itself (CPU, memory, event-loop lag, GC), under prom-client's standard names: the
  // event-loop lag is the packet loop's, since one thread does both.
  collectDefaultMetrics({ register: registry });
  new Counter({
    name: "masq_events_total",
    help: "Engine events (flows created, expired, translated packets ...)",
    labelNames: ["event"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(source.engine().counters))
        if (!k.startsWith("drop_")) this.inc({ event: k }, v);
    },
  });
  new Counter({
    name: "masq_drops_total",
    help: "Packets dropped by the engine, by reason",
    labelNames: ["reason"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(source.engine().counters))
        if (k.startsWith("drop_")) this.inc({ reason: k.slice(5) }, v);
    },
  });
  new Counter({
    name: "masq_reloads_total",
    help: "Config reloads (masq reload, SIGHUP) by result: ok, refused (a setting needs a restart), failed (invalid)",
    labelNames: ["result"],
    registers: [registry],
    collect() {
      this.reset();
      const r = source.reloads?.();
      if (r) for (const result of ["ok", "refused", "failed"] as const) this.inc({ result }, r[result]);
    },
  });
  new Counter({
    name: "masq_datapath_total",
    help: "Datapath I/O counters (batches, packets read, written, write failures)",
    labelNames: ["counter"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(source.datapath())) this.inc({ counter: k }, v);
    },
  });
  new Counter({
    name: "masq_tun_total",
    help: "TUN device counters (packets and bytes read and written, wake-ups, errors, drops), per device",
    labelNames: ["device", "counter"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [device, counters] of Object.entries(source.devices?.() ?? {}))
        for (const [k, v] of Object.entries(counters)) this.inc({ device, counter: k }, v);
    },
  });
  new Counter({
    name: "masq_firewall_rule_hits_total",
    help: "New flows matched by each firewall rule (first match wins)",
    labelNames: ["rule", "name", "action"],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of source.firewall?.() ?? [])
        this.inc({ rule: String(r.index), name: r.name, action: r.action }, r.hits);
    },
  });
  new Counter({
    name: "masq_portmap_total",
    help: "NAT-PMP/PCP requests and their results, by counter",
    labelNames: ["counter"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(source.portmap?.() ?? {}))
        if (k !== "mappings_active") this.inc({ counter: k }, v);
    },
  });
  new Gauge({
    name: "masq_portmap_mappings",
    help: "Live NAT-PMP/PCP mappings",
    registers: [registry],
    collect() {
      this.set(source.portmap?.()?.mappings_active ?? 0);
    },
  });
  new Counter({
    name: "masq_upnp_total",
    help: "UPnP IGD searches, control requests and their results, by counter",
    labelNames: ["counter"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(source.upnp?.() ?? {}))
        if (k !== "mappings_active") this.inc({ counter: k }, v);
    },
  });
  new Gauge({
    name: "masq_upnp_mappings",
    help: "Live UPnP IGD mappings",
    registers: [registry],
    collect() {
      this.set(source.upnp?.()?.mappings_active ?? 0);
    },
  });
  new Counter({
    name: "masq_nat_log_total",
    help: "NAT event log: events drained, records sent, and records dropped by reason",
    labelNames: ["counter"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(source.natLog?.() ?? {})) this.inc({ counter: k }, v);
    },
  });
  const tables: Array<[string, string, (s: EngineStats) => number]> = [
    ["masq_flows", "Active flows", (s) => s.flows],
    ["masq_tcp_half_open", "Inbound TCP flows that have not completed their handshake", (s) => s.halfOpen],
    ["masq_mappings", "Active endpoint mappings", (s) => s.mappings],
    ["masq_hosts", "Inside hosts with flows", (s) => s.hosts],
    ["masq_held_fragments", "Fragments held for their first fragment", (s) => s.heldFragments],
    ["masq_flow_capacity", "Preallocated flow capacity", (s) => s.capacity.flows],
  ];
  for (const [name, help, read] of tables)
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(source.engine()));
      },
    });
  return registry;
}
