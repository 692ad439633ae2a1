// What the dashboard shows, computed once per tick for every page: the connection table (the
// same listing and flow records `masq conns` reads: engine.listFlows, readFlow, flowView), the
// counters and forwards of the control API's own handlers, and from them the series the charts
// draw: each inside host's throughput and flow count, and the drops by reason.
//
// Per-host throughput comes from the flows' own byte counters, added up per inside host at each
// tick, not from new work on the packet path: the difference between two ticks is what the
// host's flows moved meanwhile (a flow that ended between two ticks takes its bytes with it, so
// a host whose connections are all short looks slower than it is). The listing runs on the packet
// loop's thread in slices of about 2 ms with the loop's turns between them, as `masq conns`
// does, and the next tick waits ten times as long as this one kept the thread busy (its slices,
// not the packet batches between them), so however big the table the dashboard takes at most
// about a tenth of the thread.
import { performance } from "node:perf_hooks";
import { type HostSums, scanTable } from "../../nat/table-scan.ts";
import type { FlowFields, FlowView, PinView } from "../../nat/view.ts";
import { flowView } from "../../nat/views.ts";
import { formatIpv4 } from "../../packet/addr.ts";
import type { ForwardView } from "../../portmap/forwards.ts";
import type { ConnsEngine } from "../conns-listing.ts";
import type { StatsReply } from "../format.ts";

/** Flows the table shows: the most recently active (masq conns --limit 500). */
export const TABLE_FLOWS = 500;
/** Inside hosts a sample keeps, the busiest first. */
export const SAMPLE_HOSTS = 32;
/** Samples kept for the charts: five minutes at one a second. */
export const HISTORY = 300;
const ADDRESS_CHANGES = 20;

export interface HostSample {
  addr: string;
  flows: number;
  /** Bits per second since the previous tick, each way (out: from the host). */
  bpsOut: number;
  bpsIn: number;
}

export interface Sample {
  /** Milliseconds since the epoch. */
  t: number;
  hosts: HostSample[];
  /** Drops per second since the previous tick, by reason (only those that happened). */
  drops: Record<string, number>;
}

export interface AddressChange {
  t: number;
  from: string[];
  to: string[];
}

export interface Snapshot {
  seq: number;
  t: number;
  mode: string;
  uptimeSec: number;
  publicAddresses: string[];
  addressChanges: AddressChange[];
  /** The most recently active flows, newest first, as `masq conns --json` lists them. */
  flows: FlowView[];
  /** Flows in the table. */
  total: number;
  engine: { flows: number; mappings: number; hosts: number; capacity: StatsReply["engine"]["capacity"] };
  sample: Sample;
  /** Every drop counter that is not zero, since masq started. */
  dropsTotal: Record<string, number>;
  forwards: ForwardView[];
  /** Pinned mappings other than ALG expectations: forwards' ports, NAT-PMP, PCP, UPnP. */
  mappings: PinView[];
  /** ALG expectations: the related connections a command announced (FTP data, DCC, RTP). */
  expectations: PinView[];
  allowChanges: boolean;
}

/**
 * An engine whose table lies with workers (sharded-engine.ts): they make the pass themselves, and
 * only the result comes here.
 */
export interface ScanningEngine extends ConnsEngine {
  scanFlows(limit: number): Promise<{ flows: FlowFields[]; hosts: Map<number, HostSums>; busyMs: number }>;
}

/** What the sampler reads: the engine's listing and the control API's handlers. */
export interface SamplerSources {
  engine: ConnsEngine | ScanningEngine;
  stats(): StatsReply;
  forwards?: () => { forwards: ForwardView[]; pins: PinView[] };
  /** Pin origins that are ALGs (src/alg/algs.ts names). */
  algNames: ReadonlySet<string>;
  allowChanges: boolean;
  now?: () => number;
}

export class Sampler {
  readonly history: Sample[] = [];
  latest: Snapshot | undefined;
  /** Milliseconds the last tick held the thread (its slices added up, not the waits between). */
  lastBusyMs = 0;
  private seq = 0;
  private previous: { t: number; hosts: Map<number, HostSums>; drops: Record<string, number> } | undefined;
  private readonly changes: AddressChange[] = [];
  private lastAddresses: string | undefined;
  private readonly now: () => number;

  constructor(private readonly s: SamplerSources) {
    this.now = s.now ?? Date.now;
  }

  /** Computes the next snapshot; the table is read in slices with the event loop's turns between. */
  async tick(): Promise<Snapshot> {
    const { flows, hosts, busyMs } = await scanEngine(this.s.engine);
    const started = performance.now();
    const t = this.now();
    const stats = this.s.stats();
    const drops = dropCounters(stats.engine.counters);
    const prev = this.previous;
    const dt = prev ? Math.max(0.001, (t - prev.t) / 1000) : 0;
    const sample: Sample = { t, hosts: hostSamples(hosts, prev?.hosts, dt), drops: {} };
    if (prev)
      for (const [reason, n] of Object.entries(drops)) {
        const d = n - (prev.drops[reason] ?? 0);
        if (d > 0) sample.drops[reason] = round2(d / dt);
      }
    this.previous = { t, hosts, drops };
    this.history.push(sample);
    if (this.history.length > HISTORY) this.history.shift();
    this.noteAddresses(t, stats.publicAddresses);
    const fw = this.s.forwards?.() ?? { forwards: [], pins: this.s.engine.pinList() };
    const e = stats.engine;
    this.latest = {
      seq: ++this.seq,
      t,
      mode: stats.mode,
      uptimeSec: stats.uptimeSec,
      publicAddresses: stats.publicAddresses,
      addressChanges: [...this.changes],
      flows,
      total: this.s.engine.flowTable.count,
      engine: { flows: e.flows, mappings: e.mappings, hosts: e.hosts, capacity: e.capacity },
      sample,
      dropsTotal: drops,
      forwards: fw.forwards,
      mappings: fw.pins.filter((p) => !this.s.algNames.has(p.origin)),
      expectations: fw.pins.filter((p) => this.s.algNames.has(p.origin)),
      allowChanges: this.s.allowChanges,
    };
    this.lastBusyMs = busyMs + (performance.now() - started);
    return this.latest;
  }

  private noteAddresses(t: number, addresses: string[]): void {
    const key = addresses.join(",");
    if (key === this.lastAddresses) return;
    const from =
      this.lastAddresses === undefined || this.lastAddresses === "" ? [] : this.lastAddresses.split(",");
    this.changes.push({ t, from, to: [...addresses] });
    if (this.changes.length > ADDRESS_CHANGES) this.changes.shift();
    this.lastAddresses = key;
  }
}

async function scanEngine(
  engine: ConnsEngine | ScanningEngine,
): Promise<{ flows: FlowView[]; hosts: Map<number, HostSums>; busyMs: number }> {
  if (!("scanFlows" in engine)) return scanFlows(engine, TABLE_FLOWS);
  const r = await engine.scanFlows(TABLE_FLOWS);
  return { flows: r.flows.map((f) => flowView(f)), hosts: r.hosts, busyMs: r.busyMs };
}

/** One pass over one engine's flow table: the first `limit` flows as views, and every flow's bytes per host. */
export function scanFlows(
  engine: ConnsEngine,
  limit: number,
): Promise<{ flows: FlowView[]; hosts: Map<number, HostSums>; busyMs: number }> {
  return scanTable(engine, limit, flowView);
}

function hostSamples(
  now: Map<number, HostSums>,
  before: Map<number, HostSums> | undefined,
  dt: number,
): HostSample[] {
  const out: HostSample[] = [];
  for (const [addr, h] of now) {
    const b = before?.get(addr);
    // The first tick has nothing to compare with; a host new since the last one has flows that
    // began since (or were not seen), whose bytes are what they moved meanwhile.
    const rate = (cur: number, old: number) => (before ? Math.max(0, Math.round(((cur - old) * 8) / dt)) : 0);
    out.push({
      addr: formatIpv4(addr),
      flows: h.flows,
      bpsOut: rate(h.bytesOut, b?.bytesOut ?? 0),
      bpsIn: rate(h.bytesIn, b?.bytesIn ?? 0),
    });
  }
  out.sort((x, y) => y.bpsOut + y.bpsIn - (x.bpsOut + x.bpsIn) || y.flows - x.flows);
  return out.slice(0, SAMPLE_HOSTS);
}

function dropCounters(counters: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, n] of Object.entries(counters))
    if (name.startsWith("drop_") && n > 0) out[name.slice("drop_".length)] = n;
  return out;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
