// The NAT log's control-plane half: on a timer it drains the engines' event rings
// (src/nat/nat-events.ts), formats each event as RFC 5424 syslog (syslog.ts) and IPFIX
// (ipfix.ts), and hands the messages to the senders (sender.ts), which never block. The packet
// loop only ever wrote into a ring; a drain is bounded per tick, so even a burst of new mappings
// costs the loop at most one bounded slice of formatting between batches.
import type { NatEvent, NatEventRing } from "../nat/nat-events.ts";
import { dataRecord, IpfixPacker } from "./ipfix.ts";
import type { Sender, SenderCounters } from "./sender.ts";
import { octetCounted, type SyslogHeader, syslogMessage } from "./syslog.ts";

export interface ExporterOptions {
  /** The rings to drain (one per engine: a worker's included). */
  rings: () => NatEventRing[];
  syslog?: { sender: Sender; framing: "datagram" | "octet-counting"; header: SyslogHeader };
  ipfix?: { sender: Sender; domainId: number; templateIntervalSec: number };
  /** Add the remote endpoint to the records (RFC 6888 REQ-12: off by default). */
  destination: boolean;
  /** The engine's clock (ms) as wall time (ms since the epoch). */
  toWallMs: (engineMs: number) => number;
  /** Wall clock in ms (for the IPFIX export time and the template refresh). */
  now?: () => number;
  intervalMs?: number;
  /** Events formatted per ring per tick, at most. */
  budget?: number;
}

export interface NatLogStats {
  events: number;
  /** Events lost because a ring was full (the drain fell behind). */
  dropped_ring_full: number;
  syslog?: SenderCounters & { target: string };
  ipfix?: SenderCounters & { target: string; records: number; templates_sent: number };
}

export class NatLogExporter {
  private readonly packer: IpfixPacker | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastTemplatesMs = Number.NEGATIVE_INFINITY;
  private events = 0;
  private ipfixRecords = 0;
  private templatesSent = 0;
  private readonly now: () => number;
  private readonly scratch: Array<{ template: number; bytes: Buffer }> = [];

  constructor(private readonly o: ExporterOptions) {
    this.packer = o.ipfix ? new IpfixPacker(o.ipfix.domainId) : undefined;
    this.now = o.now ?? Date.now;
  }

  /** Drains now, then every `intervalMs` (200 ms by default). */
  start(): void {
    this.drain();
    this.timer = setInterval(() => this.drain(), this.o.intervalMs ?? 200);
    this.timer.unref();
  }

  /** Formats and sends what the rings hold (up to the budget per ring); returns how many events. */
  drain(): number {
    const budget = this.o.budget ?? 16_384;
    const visit = (e: NatEvent) => this.event(e);
    let n = 0;
    for (const ring of this.o.rings()) n += ring.drain(visit, budget);
    this.events += n;
    this.flushIpfix();
    return n;
  }

  private event(e: NatEvent): void {
    const wallMs = this.o.toWallMs(e.timeMs);
    const s = this.o.syslog;
    if (s) {
      const msg = syslogMessage(e, wallMs, s.header);
      s.sender.send(s.framing === "octet-counting" ? octetCounted(msg) : Buffer.from(msg, "utf8"));
    }
    if (this.packer) {
      const r = dataRecord(e, wallMs, this.o.destination);
      if (r) this.scratch.push(r);
    }
  }

  private flushIpfix(): void {
    const ip = this.o.ipfix;
    if (!ip || !this.packer) return;
    const nowMs = this.now();
    // RFC 7011 §8.4: over UDP the templates go again at intervals, so a collector that started
    // late (or lost them) can decode what follows.
    const templates = nowMs - this.lastTemplatesMs >= ip.templateIntervalSec * 1000;
    if (this.scratch.length === 0 && !templates) return;
    if (templates) {
      this.lastTemplatesMs = nowMs;
      this.templatesSent++;
    }
    for (const m of this.packer.pack(this.scratch, Math.floor(nowMs / 1000), templates)) ip.sender.send(m);
    this.ipfixRecords += this.scratch.length;
    this.scratch.length = 0;
  }

  stats(): NatLogStats {
    const lost = this.o.rings().reduce((n, r) => n + r.lost, 0);
    const out: NatLogStats = { events: this.events, dropped_ring_full: lost };
    if (this.o.syslog) out.syslog = { target: this.o.syslog.sender.target, ...this.o.syslog.sender.counters };
    if (this.o.ipfix)
      out.ipfix = {
        target: this.o.ipfix.sender.target,
        ...this.o.ipfix.sender.counters,
        records: this.ipfixRecords,
        templates_sent: this.templatesSent,
      };
    return out;
  }

  /** The counters as one flat list (`syslog_sent`, `ipfix_dropped_queue_full` …). */
  counters(): Record<string, number> {
    const s = this.stats();
    const out: Record<string, number> = { events: s.events, dropped_ring_full: s.dropped_ring_full };
    for (const [prefix, c] of [
      ["syslog", s.syslog],
      ["ipfix", s.ipfix],
    ] as const)
      if (c) for (const [k, v] of Object.entries(c)) if (typeof v === "number") out[`${prefix}_${k}`] = v;
    return out;
  }

  /** Drains what is left and closes the senders. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.drain();
    this.o.syslog?.sender.close();
    this.o.ipfix?.sender.close();
  }
}
