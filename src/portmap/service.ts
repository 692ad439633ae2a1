// The port-mapping service on the inside interfaces: NAT-PMP (RFC 6886) and PCP (RFC 6887) on
// UDP 5351 of the gateway's inside address(es). Both turn a granted MAP into an engine pin
// (origin "natpmp" / "pcp"), which keeps the mapping alive without flows, admits inbound
// connections whatever the filtering mode, and lapses on time in the engine itself.
//
// PortmapService is the protocol logic (bytes in, bytes out, no sockets: unit-tested against a
// real engine): it routes a datagram by its version to natpmp-answers.ts or pcp-answers.ts,
// which grant leases (leases.ts); server.ts owns the sockets.

import { performance } from "node:perf_hooks";
import { formatIpv4 } from "../packet/addr.ts";
import { TokenBucket } from "../policy/rate.ts";
import type { PortmapConfig } from "./config.ts";
import { type Grant, PortmapLeases, type Proto } from "./leases.ts";
import {
  errorResponse,
  externalAddressResponse,
  NATPMP_ANNOUNCE_PORT,
  NATPMP_VERSION,
  NatPmpResult,
  parseNatPmpRequest,
} from "./natpmp.ts";
import { answerNatPmp } from "./natpmp-answers.ts";
import type { RequestSources } from "./neighbours.ts";
import { PCP_CLIENT_PORT, PcpResult, parsePcpRequest, pcpAnnounceResponse } from "./pcp.ts";
import { answerPcp } from "./pcp-answers.ts";
import type { MappedPortSteering } from "./port-steering.ts";
import type { PortMapEngine } from "./portmap-engine.ts";

/** Answers per second (and at once) to sources with no neighbour entry: see `requester`. */
const STRANGER_ANSWER_RATE = 5;
const STRANGER_ANSWER_BURST = 10;

export interface PortmapLog {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export const silentLog: PortmapLog = { info() {}, debug() {}, warn() {} };

export interface PortmapServiceOptions {
  engine: PortMapEngine;
  config: PortmapConfig;
  /** Inside networks as numbers: only hosts on them may ask. */
  insideNetworks: Array<{ addr: number; len: number }>;
  /** Milliseconds, for the epoch (seconds since this service started; RFC 6886 §3.6, 6887 §8.5). */
  nowMs?: () => number;
  /**
   * When the epoch began, on `nowMs`'s clock (default: now). After `masq stop --keep-state` the
   * stopped masq's epoch continues: a client that saw it go back would map everything again.
   */
  epochStartMs?: number;
  log?: PortmapLog;
  /**
   * Who is behind a request's source (neighbours.ts); without it every inside address is taken
   * as a host of its own.
   */
  sources?: RequestSources;
  /** Interface mode: steers suggested ports beyond masq's range into it (port-steering.ts). */
  steering?: MappedPortSteering;
  /** The lease table, when shared with UPnP IGD (one per-host cap for all protocols); default: its own. */
  leases?: PortmapLeases;
}

/** What the protocols' answers need of the service. */
export interface AnswerContext {
  readonly config: PortmapConfig;
  readonly log: PortmapLog;
  readonly leases: PortmapLeases;
  /** Seconds since the service started (RFC 6886 §3.6, RFC 6887 §8.5). */
  epochSec(): number;
  count(name: string): void;
  isInside(addr: number): boolean;
  /** The host behind a request, as the quotas count it (see PortmapService.requester). */
  requester(src: number, device: string | undefined): string | undefined | null;
  externalAddressFor(inAddr: number): number;
}

export class PortmapService implements AnswerContext {
  readonly config: PortmapConfig;
  private readonly engine: PortMapEngine;
  private readonly inside: Array<{ addr: number; mask: number }>;
  private readonly nowMs: () => number;
  private startMs: number;
  readonly log: PortmapLog;
  private readonly sources: RequestSources | undefined;
  private readonly steering: MappedPortSteering | undefined;
  private readonly strangerAnswers = new TokenBucket(STRANGER_ANSWER_RATE, STRANGER_ANSWER_BURST);
  /** The mappings granted, and who holds each. */
  readonly leases: PortmapLeases;
  readonly counters: Record<string, number> = {
    natpmp_requests: 0,
    pcp_requests: 0,
    ignored: 0,
    mappings_created: 0,
    mappings_renewed: 0,
    mappings_deleted: 0,
    /** Requests from an inside address the gateway does not see as a neighbour (forged sources). */
    refused_not_neighbour: 0,
    /** Of those, refused without an answer (their answers are rate-limited). */
    refused_not_answered: 0,
    /** Mappings refused because all hosts together hold portmap.max_mappings. */
    refused_global_cap: 0,
  };

  constructor(opts: PortmapServiceOptions) {
    this.engine = opts.engine;
    this.config = opts.config;
    this.inside = opts.insideNetworks.map(({ addr, len }) => {
      const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
      return { addr: (addr & mask) >>> 0, mask };
    });
    this.nowMs = opts.nowMs ?? (() => performance.now());
    this.startMs = opts.epochStartMs ?? this.nowMs();
    this.log = opts.log ?? silentLog;
    this.sources = opts.sources;
    this.steering = opts.steering;
    this.leases =
      opts.leases ??
      new PortmapLeases(
        this.engine,
        this.config,
        this.log,
        (a) => this.isInside(a),
        (n) => this.count(n),
        this.steering,
      );
  }

  /**
   * The public address changed: the epoch starts again, so clients see their mappings may be
   * gone and map again (RFC 6886 §3.6, RFC 6887 §8.5); the grants move to the new address.
   */
  addressChanged(from: number, to: number): void {
    this.startMs = this.nowMs();
    this.leases.moveAddress(from, to);
  }

  epochSec(): number {
    return Math.floor(this.epochMs() / 1000) >>> 0;
  }

  /** How long the epoch has run (ms): kept by `masq stop --keep-state`. */
  epochMs(): number {
    return this.nowMs() - this.startMs;
  }

  isInside(a: number): boolean {
    for (const n of this.inside) if ((a & n.mask) >>> 0 === n.addr) return true;
    return false;
  }

  /**
   * The host behind a request from `src` (arrived on `device`), as the quotas count it. undefined:
   * not an inside host the gateway sees, refused as not authorized; null: refused too, but not
   * answered. An answer to an address with no neighbour entry waits in the kernel for an ARP reply
   * that never comes, charged to the server's socket: a few thousand forged requests filled its
   * send buffer and held up the answers to real hosts for seconds. So such answers are
   * rate-limited (a real host missing from the table still gets one, and the ARP it causes
   * makes the entry for its next try).
   */
  requester(src: number, device: string | undefined): string | undefined | null {
    if (!this.isInside(src)) return undefined;
    if (this.sources === undefined) return `ip:${src}`;
    const who = this.sources.identify(src, device);
    if (who !== undefined) return who;
    this.count("refused_not_neighbour");
    this.log.debug({ src: formatIpv4(src), device }, "port-mapping request from no neighbour refused");
    if (this.strangerAnswers.take(this.nowMs())) return undefined;
    this.count("refused_not_answered");
    return null;
  }

  /** The outside address an inside host's mappings get (its paired address), 0 if none. */
  externalAddressFor(inAddr: number): number {
    if (this.engine.config.outside.length === 0) return 0;
    // Paired pooling (RFC 4787 REQ-2): the engine pairs each host with one address.
    return this.engine.pairedAddress(inAddr);
  }

  /** Live grants (pins that lapsed in the engine are forgotten). */
  live(): Grant[] {
    return this.leases.live();
  }

  stats(): Record<string, number> {
    // The lease table may be shared with UPnP IGD, which counts its own.
    return { ...this.counters, mappings_active: this.live().filter((g) => g.origin !== "upnp").length };
  }

  count(name: string): void {
    this.counters[name] = (this.counters[name] ?? 0) + 1;
  }

  /**
   * Answers one datagram from srcAddr (an unsigned IPv4 number); undefined: no answer. The
   * version byte routes it (RFC 6887 §9: 0 is NAT-PMP, 2 is PCP, and a PCP-only server
   * answering a NAT-PMP client with UNSUPP_VERSION is read by it as its own code 1).
   */
  handle(msg: Uint8Array, srcAddr: number, device?: string): Uint8Array | undefined {
    if (msg.length < 2) {
      this.count("ignored");
      return undefined;
    }
    const version = msg[0];
    if (version === NATPMP_VERSION && this.config.natpmp) return answerNatPmp(this, msg, srcAddr, device);
    if (this.config.pcp) return answerPcp(this, msg, srcAddr, device);
    // NAT-PMP only: any other version gets the NAT-PMP "unsupported version".
    if ((msg[1] & 0x80) !== 0) {
      this.count("ignored");
      return undefined;
    }
    this.count("natpmp_requests");
    this.count("natpmp_result_unsupported_version");
    return errorResponse(msg[1], NatPmpResult.UNSUPPORTED_VERSION, this.epochSec());
  }

  /**
   * `handle`, with the outside port a MAP request suggests first steered into masq when it lies
   * beyond masq's range (interface mode, port-steering.ts), so that the mapping can have it.
   */
  async answer(msg: Uint8Array, srcAddr: number, device?: string): Promise<Uint8Array | undefined> {
    const steering = this.steering;
    const ask = steering ? this.suggestedPort(msg, srcAddr, device) : undefined;
    if (!steering || !ask) return this.handle(msg, srcAddr, device);
    const settle = await steering.ready(ask.proto, ask.port);
    try {
      return this.handle(msg, srcAddr, device);
    } finally {
      settle();
    }
  }

  /**
   * The outside port a MAP request (lifetime above 0) from a host the gateway sees suggests, when
   * it would need rules of its own; undefined otherwise (the request is answered as it is).
   */
  private suggestedPort(
    msg: Uint8Array,
    src: number,
    device: string | undefined,
  ): { proto: Proto; port: number } | undefined {
    // Not for requests that will be refused anyway: a forged flood must not churn the rules.
    if (!this.isInside(src)) return undefined;
    if (this.sources !== undefined && this.sources.identify(src, device) === undefined) return undefined;
    let ask: { proto: Proto; port: number; lifetime: number } | undefined;
    if (msg[0] === NATPMP_VERSION) {
      const r = this.config.natpmp ? parseNatPmpRequest(msg) : undefined;
      if (r?.kind === "map") ask = { proto: r.proto, port: r.suggestedExternalPort, lifetime: r.lifetime };
    } else if (this.config.pcp) {
      const r = parsePcpRequest(msg, src);
      if (r.kind === "map" && (r.protocol === 6 || r.protocol === 17))
        ask = {
          proto: r.protocol === 6 ? "tcp" : "udp",
          port: r.suggestedExternalPort,
          lifetime: r.lifetime,
        };
    }
    if (!ask || ask.lifetime === 0 || !this.steering?.needs(ask.port)) return undefined;
    return { proto: ask.proto, port: ask.port };
  }

  /** Forgets the mappings that lapsed in the engine, so the rules of their ports go (server.ts, each second). */
  sweep(): void {
    this.leases.live();
  }

  /** Unsolicited announcements after a start (RFC 6886 §3.2.1, RFC 6887 §14.1.3). */
  announcements(): Array<{ port: number; msg: Uint8Array }> {
    const out: Array<{ port: number; msg: Uint8Array }> = [];
    const epoch = this.epochSec();
    // Without a public address there is none to announce (NAT-PMP would say 0.0.0.0).
    if (this.config.natpmp && !this.engine.addressless)
      out.push({
        port: NATPMP_ANNOUNCE_PORT,
        msg: externalAddressResponse(NatPmpResult.SUCCESS, epoch, this.engine.config.outside[0] ?? 0),
      });
    if (this.config.pcp)
      out.push({
        port: PCP_CLIENT_PORT,
        msg: pcpAnnounceResponse({ result: PcpResult.SUCCESS, lifetime: 0, epochSec: epoch }),
      });
    return out;
  }
}
