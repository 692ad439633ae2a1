// The port-mapping servers on the inside interfaces: NAT-PMP (RFC 6886) and PCP (RFC 6887) on
// UDP 5351 of the gateway's inside address(es). Both turn a granted MAP into an engine pin
// (origin "natpmp" / "pcp"), which keeps the mapping alive without flows, admits inbound
// connections whatever the filtering mode, and lapses on time in the engine itself.
//
// PortmapService is the protocol logic (bytes in, bytes out, no sockets: unit-tested against a
// real engine); PortmapServer owns the sockets. The gateway's own stack receives this traffic
// (it is addressed to the gateway; the 'local' table comes before masq's steering rules).

import { createSocket, type Socket } from "node:dgram";
import { networkInterfaces } from "node:os";
import { performance } from "node:perf_hooks";
import { type ErrorCode, natpmpResultOf, pcpResultOf } from "../errors/codes.ts";
import { MasqError } from "../errors/masq-error.ts";
import type { NatEngine } from "../nat/engine.ts";
import { defaultPortShare } from "../nat/port-quota.ts";
import { formatIpv4, parseIpv4 } from "../packet/addr.ts";
import { TokenBucket } from "../policy/rate.ts";
import {
  errorResponse,
  externalAddressResponse,
  mapResponse,
  NATPMP_ANNOUNCE_PORT,
  NATPMP_PORT,
  NATPMP_VERSION,
  NatPmpResult,
  parseNatPmpRequest,
} from "./natpmp.ts";
import type { Prefix, RequestSources } from "./neighbours.ts";
import {
  OPCODE_MAP,
  OPTION_FILTER,
  OPTION_PREFER_FAILURE,
  PCP_CLIENT_PORT,
  PCP_RESULT_NAMES,
  type PcpMapRequest,
  PcpResult,
  parsePcpRequest,
  pcpAnnounceResponse,
  pcpErrorResponse,
  pcpMapResponse,
  writeMappedIpv4,
} from "./pcp.ts";

export interface PortmapConfig {
  enabled: boolean;
  natpmp: boolean;
  pcp: boolean;
  /** Granted lifetimes are clamped to [minLifetime, maxLifetime] seconds (RFC 6887 §15). */
  minLifetime: number;
  maxLifetime: number;
  /** Live NAT-PMP/PCP mappings one inside host may hold (RFC 6888 REQ-4 spirit). */
  maxPerHost: number;
  /**
   * Live NAT-PMP/PCP mappings of all hosts together, per protocol; 0: the default share of the
   * protocol's port range (a quarter), so the protocols can never take the range.
   */
  maxMappings: number;
  /** Take requests only from hosts in the inside interface's neighbour (ARP) table (neighbours.ts). */
  requireNeighbour: boolean;
  /** Hosts taken without a neighbour entry (e.g. behind an inside router). */
  allowedHosts: Prefix[];
  /** Honour PCP THIRD_PARTY (a mapping for another inside host); off by default (§13.1). */
  thirdParty: boolean;
}

export function defaultPortmapConfig(): PortmapConfig {
  return {
    enabled: false,
    natpmp: true,
    pcp: true,
    // RFC 6887 §15: the minimum SHOULD be 120 s; 24 h is a sane ceiling for a home gateway.
    minLifetime: 120,
    maxLifetime: 86_400,
    maxPerHost: 64,
    maxMappings: 0,
    requireNeighbour: true,
    allowedHosts: [],
    thirdParty: false,
  };
}

/** Pin refusals that concern only the suggested outside address or port (see `map`). */
const SUGGESTION_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "MASQ_ERR_PORT_IN_USE",
  "MASQ_ERR_ALREADY_MAPPED",
  "MASQ_ERR_NOT_PUBLIC_ADDRESS",
]);

/** Answers per second (and at once) to sources with no neighbour entry: see `requester`. */
const STRANGER_ANSWER_RATE = 5;
const STRANGER_ANSWER_BURST = 10;

/** Error lifetimes (RFC 6887 §7.4): how long a client should expect the same answer. */
const LONG_ERROR_SEC = 1800;
const SHORT_ERROR_SEC = 30;

type Origin = "natpmp" | "pcp";
type Proto = "tcp" | "udp";

/** A mapping granted through NAT-PMP or PCP; the pin in the engine is the truth about liveness. */
interface Grant {
  origin: Origin;
  proto: Proto;
  inAddr: number;
  inPort: number;
  /** Who asked (RequestSources' identity): the per-host quota counts on it. */
  owner: string;
  pinId: number;
  outAddr: number;
  outPort: number;
  /** PCP: the requesting client's nonce (hex); only it may renew or delete (§11.3). */
  nonce: string;
  /** PCP FILTER: the one remote allowed (0 = any). */
  remoteAddr: number;
}

/** A refused mapping carries its code; each protocol answers with the code's result (errors/codes.ts). */
type MapOutcome =
  | { ok: true; grant: Grant; lifetime: number }
  | { ok: false; code: ErrorCode; detail: string };

export interface PortmapLog {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

const silentLog: PortmapLog = { info() {}, debug() {}, warn() {} };

export interface PortmapServiceOptions {
  engine: NatEngine;
  config: PortmapConfig;
  /** Inside networks as numbers: only hosts on them may ask. */
  insideNetworks: Array<{ addr: number; len: number }>;
  /** Milliseconds, for the epoch (seconds since this service started; RFC 6886 §3.6, 6887 §8.5). */
  nowMs?: () => number;
  log?: PortmapLog;
  /**
   * Who is behind a request's source (neighbours.ts); without it every inside address is taken
   * as a host of its own.
   */
  sources?: RequestSources;
}

export class PortmapService {
  readonly config: PortmapConfig;
  private readonly engine: NatEngine;
  private readonly inside: Array<{ addr: number; mask: number }>;
  private readonly nowMs: () => number;
  private readonly startMs: number;
  private readonly log: PortmapLog;
  private readonly sources: RequestSources | undefined;
  private readonly strangerAnswers = new TokenBucket(STRANGER_ANSWER_RATE, STRANGER_ANSWER_BURST);
  private readonly grants = new Map<string, Grant>();
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
    this.startMs = this.nowMs();
    this.log = opts.log ?? silentLog;
    this.sources = opts.sources;
  }

  epochSec(): number {
    return Math.floor((this.nowMs() - this.startMs) / 1000) >>> 0;
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
  private requester(src: number, device: string | undefined): string | undefined | null {
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

  /** The cap on port-mapping mappings of one protocol, all hosts together. */
  private globalCap(proto: Proto): number {
    return this.config.maxMappings > 0
      ? this.config.maxMappings
      : defaultPortShare(this.engine.config.ports[proto]);
  }

  /** The outside address an inside host's mappings get (its paired address), 0 if none. */
  externalAddressFor(inAddr: number): number {
    if (this.engine.config.outside.length === 0) return 0;
    // Paired pooling (RFC 4787 REQ-2): the engine pairs each host with one address.
    return this.engine.pairedAddress(inAddr);
  }

  /** Live grants (pins that lapsed in the engine are forgotten here too). */
  live(): Grant[] {
    const out: Grant[] = [];
    for (const [k, g] of this.grants) {
      if (this.engine.pins.get(g.pinId) === undefined) this.grants.delete(k);
      else out.push(g);
    }
    return out;
  }

  stats(): Record<string, number> {
    return { ...this.counters, mappings_active: this.live().length };
  }

  private count(name: string): void {
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
    if (version === NATPMP_VERSION && this.config.natpmp) return this.natpmp(msg, srcAddr, device);
    if (this.config.pcp) return this.pcp(msg, srcAddr, device);
    // NAT-PMP only: any other version gets the NAT-PMP "unsupported version".
    if ((msg[1] & 0x80) !== 0) {
      this.count("ignored");
      return undefined;
    }
    this.count("natpmp_requests");
    this.count("natpmp_result_unsupported_version");
    return errorResponse(msg[1], NatPmpResult.UNSUPPORTED_VERSION, this.epochSec());
  }

  // ------------------------------------------------------------------ NAT-PMP

  private natpmp(msg: Uint8Array, src: number, device: string | undefined): Uint8Array | undefined {
    const req = parseNatPmpRequest(msg);
    if (req.kind === "ignore") {
      this.count("ignored");
      return undefined;
    }
    this.count("natpmp_requests");
    const epoch = this.epochSec();
    const result = (code: number) => {
      this.count(`natpmp_result_${NATPMP_RESULT_NAMES[code] ?? code}`);
      return code;
    };
    if (req.kind === "error") return errorResponse(req.opcode, result(req.result), epoch);
    const owner = this.requester(src, device);
    if (owner === null) return undefined;
    if (req.kind === "external-address") {
      if (owner === undefined) return externalAddressResponse(result(NatPmpResult.NOT_AUTHORIZED), epoch, 0);
      const addr = this.externalAddressFor(src);
      if (addr === 0) return externalAddressResponse(result(NatPmpResult.NETWORK_FAILURE), epoch, 0);
      return externalAddressResponse(result(NatPmpResult.SUCCESS), epoch, addr);
    }
    const { proto, internalPort, suggestedExternalPort, lifetime } = req;
    const reply = (code: number, ext: number, life: number) =>
      mapResponse(proto, result(code), epoch, internalPort, ext, life);
    if (owner === undefined) return reply(NatPmpResult.NOT_AUTHORIZED, 0, 0);
    if (lifetime === 0) {
      // §3.4: deletion; internal port 0 deletes all of this client's mappings of the protocol.
      const r = this.unmap("natpmp", proto, src, internalPort, "");
      return r === "ok" ? reply(NatPmpResult.SUCCESS, 0, 0) : reply(NatPmpResult.NOT_AUTHORIZED, 0, 0);
    }
    if (internalPort === 0) return reply(NatPmpResult.NOT_AUTHORIZED, 0, 0);
    const out = this.map({
      origin: "natpmp",
      owner,
      proto,
      inAddr: src,
      inPort: internalPort,
      suggestedPort: suggestedExternalPort,
      suggestedAddr: 0,
      lifetime,
      nonce: "",
      remoteAddr: 0,
      preferFailure: false,
    });
    if (out.ok) return reply(NatPmpResult.SUCCESS, out.grant.outPort, out.lifetime);
    this.log.debug({ src: formatIpv4(src), why: `${out.code}: ${out.detail}` }, "nat-pmp mapping refused");
    return reply(natpmpResultOf(out.code), 0, 0);
  }

  // ------------------------------------------------------------------ PCP

  private pcp(msg: Uint8Array, src: number, device: string | undefined): Uint8Array | undefined {
    const req = parsePcpRequest(msg, src);
    if (req.kind === "ignore") {
      this.count("ignored");
      return undefined;
    }
    this.count("pcp_requests");
    const epochSec = this.epochSec();
    const fail = (opcode: number, code: number, why: string) => {
      this.count(`pcp_result_${PCP_RESULT_NAMES[code]?.toLowerCase() ?? code}`);
      this.log.debug({ src: formatIpv4(src), result: PCP_RESULT_NAMES[code], why }, "pcp request refused");
      const lifetime =
        code === PcpResult.NO_RESOURCES ||
        code === PcpResult.USER_EX_QUOTA ||
        code === PcpResult.NETWORK_FAILURE
          ? SHORT_ERROR_SEC
          : LONG_ERROR_SEC;
      return pcpErrorResponse(msg, opcode, { result: code, lifetime, epochSec });
    };
    if (req.kind === "error") return fail(req.opcode, req.result, req.why);
    const owner = this.requester(src, device);
    if (owner === null) return undefined;
    if (owner === undefined)
      return fail(req.kind === "map" ? OPCODE_MAP : 0, PcpResult.NOT_AUTHORIZED, "not an inside host seen");
    if (req.kind === "announce") {
      this.count("pcp_result_success");
      return pcpAnnounceResponse({ result: PcpResult.SUCCESS, lifetime: 0, epochSec });
    }
    return this.pcpMap(req, owner, epochSec, fail);
  }

  private pcpMap(
    req: PcpMapRequest,
    owner: string,
    epochSec: number,
    fail: (opcode: number, code: number, why: string) => Uint8Array,
  ): Uint8Array {
    let inAddr = req.clientAddr;
    if (req.thirdParty !== undefined) {
      // §13.1: without configuration, a host maps only its own address.
      if (!this.config.thirdParty)
        return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "THIRD_PARTY not allowed");
      if (!this.isInside(req.thirdParty))
        return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "THIRD_PARTY address not inside");
      inAddr = req.thirdParty;
    }
    const proto: Proto | undefined = req.protocol === 6 ? "tcp" : req.protocol === 17 ? "udp" : undefined;
    const nonce = hex(req.nonce);
    if (req.lifetime === 0) {
      // Deletion (§15). Protocol 0 means all protocols; internal port 0 all ports.
      if (proto === undefined && req.protocol !== 0)
        return fail(OPCODE_MAP, PcpResult.UNSUPP_PROTOCOL, `protocol ${req.protocol}`);
      let refused = false;
      for (const p of proto ? [proto] : (["tcp", "udp"] as const))
        if (this.unmap("pcp", p, inAddr, req.protocol === 0 ? 0 : req.internalPort, nonce) !== "ok")
          refused = true;
      if (refused) return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "mapping belongs to another client");
      this.count("pcp_result_success");
      return pcpMapResponse({
        result: PcpResult.SUCCESS,
        lifetime: 0,
        epochSec,
        nonce: req.nonce,
        protocol: req.protocol,
        internalPort: req.internalPort,
        externalPort: req.suggestedExternalPort,
        externalAddr: req.suggestedExternalAddr,
      });
    }
    if (proto === undefined) return fail(OPCODE_MAP, PcpResult.UNSUPP_PROTOCOL, `protocol ${req.protocol}`);
    // "All ports" mappings are not given: one inside host must not own the whole outside address.
    if (req.internalPort === 0) return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "all-ports mapping");
    if (req.filters.length > 1)
      return fail(OPCODE_MAP, PcpResult.EXCESSIVE_REMOTE_PEERS, "one FILTER at most");
    let remoteAddr = 0;
    const f = req.filters[0];
    if (f && f.prefixLength !== 0) {
      // A pin admits one remote address (or any): narrower filters are refused, not widened.
      if (f.prefixLength !== 128 || f.remotePort !== 0)
        return fail(OPCODE_MAP, PcpResult.UNSUPP_OPTION, "FILTER other than one whole address");
      remoteAddr = f.remoteAddr;
    }
    const out = this.map({
      origin: "pcp",
      owner,
      proto,
      inAddr,
      inPort: req.internalPort,
      suggestedPort: req.suggestedExternalPort,
      suggestedAddr: req.suggestedExternalAddr,
      lifetime: req.lifetime,
      nonce,
      remoteAddr,
      preferFailure: req.preferFailure,
    });
    if (!out.ok) return fail(OPCODE_MAP, pcpResultOf(out.code), `${out.code}: ${out.detail}`);
    this.count("pcp_result_success");
    // §11.3: the options the server processed are echoed (FILTER, PREFER_FAILURE).
    const opts: number[] = [];
    if (req.preferFailure) opts.push(OPTION_PREFER_FAILURE, 0, 0, 0);
    if (f) {
      const o = new Uint8Array(24);
      o[0] = OPTION_FILTER;
      o[3] = 20;
      o[5] = f.prefixLength;
      o[6] = f.remotePort >>> 8;
      o[7] = f.remotePort & 255;
      if (f.remoteAddr !== 0) writeMappedIpv4(o, 8, f.remoteAddr);
      opts.push(...o);
    }
    return pcpMapResponse({
      result: PcpResult.SUCCESS,
      lifetime: out.lifetime,
      epochSec,
      nonce: req.nonce,
      protocol: req.protocol,
      internalPort: req.internalPort,
      externalPort: out.grant.outPort,
      externalAddr: out.grant.outAddr,
      options: Uint8Array.from(opts),
    });
  }

  // ------------------------------------------------------------------ mappings

  private clampLifetime(requested: number): number {
    return Math.min(this.config.maxLifetime, Math.max(this.config.minLifetime, requested));
  }

  /** A suggested outside port masq can actually receive on (interface mode: its own range). */
  private usablePort(proto: Proto, port: number): boolean {
    if (port === 0) return false;
    if (this.engine.config.mode === "pool") return true;
    const r = this.engine.config.ports[proto];
    return port >= r.first && port <= r.last;
  }

  private map(r: {
    origin: Origin;
    owner: string;
    proto: Proto;
    inAddr: number;
    inPort: number;
    suggestedPort: number;
    suggestedAddr: number;
    lifetime: number;
    nonce: string;
    remoteAddr: number;
    preferFailure: boolean;
  }): MapOutcome {
    if (!this.isInside(r.inAddr))
      return { ok: false, code: "MASQ_ERR_NOT_INSIDE", detail: "not an inside host" };
    if (this.engine.config.outside.length === 0)
      return { ok: false, code: "MASQ_ERR_NO_PUBLIC_ADDRESS", detail: "no public address" };
    const key = `${r.proto}/${r.inAddr}/${r.inPort}`;
    this.live(); // forget lapsed grants first
    const old = this.grants.get(key);
    if (old && (old.origin !== r.origin || old.nonce !== r.nonce))
      return {
        ok: false,
        code: "MASQ_ERR_MAPPING_OWNED",
        detail: `mapping made by another ${old.origin} client`,
      };
    if (!old) {
      let mine = 0;
      let all = 0;
      for (const g of this.grants.values()) {
        if (g.owner === r.owner) mine++;
        if (g.proto === r.proto) all++;
      }
      if (mine >= this.config.maxPerHost)
        return {
          ok: false,
          code: "MASQ_ERR_PORTMAP_HOST_QUOTA",
          detail: `${mine} mappings (portmap.max_per_host)`,
        };
      const cap = this.globalCap(r.proto);
      if (all >= cap) {
        this.count("refused_global_cap");
        return {
          ok: false,
          code: "MASQ_ERR_PORTMAP_FULL",
          detail: `${all} ${r.proto} mappings (portmap.max_mappings)`,
        };
      }
    }
    const lifetime = this.clampLifetime(r.lifetime);
    const expiresAtSec = this.engine.clockSec + lifetime;
    const base = {
      proto: r.proto,
      inAddr: r.inAddr,
      inPort: r.inPort,
      expiresAtSec,
      origin: r.origin,
      ...(r.remoteAddr !== 0 ? { remoteAddr: r.remoteAddr } : {}),
    };
    // Renewal keeps the outside port (RFC 6886 §3.3, RFC 6887 §11.3); otherwise the suggestion
    // when it is free and reachable, else whatever the allocator gives (the inside port if free).
    const wantAddr =
      old?.outAddr ?? (this.engine.config.outside.includes(r.suggestedAddr) ? r.suggestedAddr : 0);
    const wantPort = old?.outPort ?? (this.usablePort(r.proto, r.suggestedPort) ? r.suggestedPort : 0);
    let res = this.engine.pinMapping({
      ...base,
      ...(wantAddr !== 0 ? { outAddr: wantAddr } : {}),
      ...(wantPort !== 0 ? { outPort: wantPort } : {}),
    });
    const exact = (o: { outAddr: number; outPort: number }) =>
      (r.suggestedPort === 0 || o.outPort === r.suggestedPort) &&
      (r.suggestedAddr === 0 || o.outAddr === r.suggestedAddr);
    if (r.preferFailure && !("error" in res) && !exact(res)) {
      // §13.2: with PREFER_FAILURE another endpoint is no answer.
      this.engine.unpin(res.id);
      return {
        ok: false,
        code: "MASQ_ERR_SUGGESTION_UNAVAILABLE",
        detail: "suggested external endpoint unavailable",
      };
    }
    // A suggestion that cannot be had is only a hint (§11.3), so without PREFER_FAILURE masq maps
    // another endpoint; any other refusal (a full table, a quota) would refuse that one too.
    if ("error" in res && !r.preferFailure && SUGGESTION_REFUSALS.has(res.code))
      res = this.engine.pinMapping(base);
    if ("error" in res) return { ok: false, code: res.code, detail: res.error };
    // The new pin holds the mapping; the old one can go without the mapping ever lapsing.
    if (old) this.engine.unpin(old.pinId);
    const grant: Grant = {
      origin: r.origin,
      proto: r.proto,
      inAddr: r.inAddr,
      inPort: r.inPort,
      owner: r.owner,
      pinId: res.id,
      outAddr: res.outAddr,
      outPort: res.outPort,
      nonce: r.nonce,
      remoteAddr: r.remoteAddr,
    };
    this.grants.set(key, grant);
    this.count(old ? "mappings_renewed" : "mappings_created");
    this.log.info(
      {
        origin: r.origin,
        proto: r.proto,
        inside: `${formatIpv4(r.inAddr)}:${r.inPort}`,
        outside: `${formatIpv4(res.outAddr)}:${res.outPort}`,
        lifetime,
        ...(r.remoteAddr !== 0 ? { remote: formatIpv4(r.remoteAddr) } : {}),
      },
      old ? "port mapping renewed" : "port mapping created",
    );
    return { ok: true, grant, lifetime };
  }

  /** Deletes this client's mapping(s); port 0 = all of its mappings of the protocol. */
  private unmap(
    origin: Origin,
    proto: Proto,
    inAddr: number,
    inPort: number,
    nonce: string,
  ): "ok" | "refused" {
    const targets = this.live().filter(
      (g) => g.proto === proto && g.inAddr === inAddr && (inPort === 0 || g.inPort === inPort),
    );
    // Deleting what does not exist succeeds (RFC 6886 §3.4, RFC 6887 §15).
    if (inPort !== 0 && targets.some((g) => g.origin !== origin || g.nonce !== nonce)) return "refused";
    for (const g of targets) {
      if (g.origin !== origin || g.nonce !== nonce) continue;
      this.engine.unpin(g.pinId);
      this.grants.delete(`${g.proto}/${g.inAddr}/${g.inPort}`);
      this.count("mappings_deleted");
      this.log.info(
        {
          origin,
          proto,
          inside: `${formatIpv4(g.inAddr)}:${g.inPort}`,
          outside: `${formatIpv4(g.outAddr)}:${g.outPort}`,
        },
        "port mapping deleted",
      );
    }
    return "ok";
  }

  /** Unsolicited announcements after a start (RFC 6886 §3.2.1, RFC 6887 §14.1.3). */
  announcements(): Array<{ port: number; msg: Uint8Array }> {
    const out: Array<{ port: number; msg: Uint8Array }> = [];
    const epoch = this.epochSec();
    if (this.config.natpmp)
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

const NATPMP_RESULT_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(NatPmpResult).map(([k, v]) => [v, k.toLowerCase()]),
);

// ------------------------------------------------------------------ sockets

/** An inside address to serve on, and the interface it belongs to. */
export interface ListenAddress {
  address: string;
  device: string;
}

export interface PortmapServerOptions extends PortmapServiceOptions {
  /** Inside addresses to listen on (UDP 5351 each), each taking requests from its device only. */
  listen: ListenAddress[];
  port?: number;
  /**
   * The fd of a UDP socket bound to address:port that receives only what arrives on `device`
   * (the addon's udpSocketOnDevice): a request that came in from outside with a forged inside
   * source address is then never seen.
   */
  openSocket: (address: string, port: number, device: string) => number;
}

/** Start-up announcements per address (RFC 6886 §3.2.1). */
const ANNOUNCEMENTS = 10;

export class PortmapServer {
  readonly service: PortmapService;
  private readonly sockets: Socket[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(service: PortmapService) {
    this.service = service;
  }

  static async start(opts: PortmapServerOptions): Promise<PortmapServer> {
    const server = new PortmapServer(new PortmapService(opts));
    const log = opts.log ?? silentLog;
    try {
      for (const { address: addr, device } of opts.listen) {
        const s = createSocket({ type: "udp4" });
        server.sockets.push(s);
        const answer = (msg: Uint8Array, src: number, rinfo: { address: string; port: number }) => {
          let reply: Uint8Array | undefined;
          try {
            reply = server.service.handle(msg, src, device);
          } catch (err) {
            // A bug on one request must not take the gateway down.
            log.warn({ err, src: rinfo.address }, "port-mapping request failed");
            return;
          }
          if (!reply) return;
          try {
            s.send(reply, rinfo.port, rinfo.address);
          } catch (err) {
            // Closed while the request waited for the neighbour table (shutdown).
            log.debug({ err, src: rinfo.address }, "port-mapping answer not sent");
          }
        };
        s.on("message", (msg, rinfo) => {
          const src = parseIpv4(rinfo.address);
          if (src === undefined) return;
          if (opts.sources === undefined) return answer(msg, src, rinfo);
          // Who sent it may need a fresh look at the neighbour table first (bounded, shared).
          const go = () => answer(msg, src, rinfo);
          opts.sources.ready(src, device).then(go, go);
        });
        s.on("error", (err) => log.warn({ err, addr }, "port-mapping socket error"));
        const port = opts.port ?? NATPMP_PORT;
        const refused = (why: string) =>
          new MasqError(
            "MASQ_ERR_SOCKET_IN_USE",
            `portmap: cannot listen on ${addr}:${port} on ${device} (${why}); is another NAT-PMP/PCP server running? Set portmap.enabled = false to run without`,
          );
        let fd: number;
        try {
          fd = opts.openSocket(addr, port, device);
        } catch (err) {
          throw refused((err as Error).message);
        }
        await new Promise<void>((resolve, reject) => {
          const failed = (err: Error) => reject(refused(err.message));
          s.once("error", failed);
          s.bind({ fd }, () => {
            s.off("error", failed);
            resolve();
          });
        });
        // Tell the link we (re)started, so clients renew at once (best effort): ten times, the
        // first now and then at doubling intervals from 250 ms (RFC 6886 §3.2.1), each with the
        // current epoch.
        const announce = () => {
          try {
            s.setMulticastInterface(addr);
            for (const a of server.service.announcements()) s.send(a.msg, a.port, "224.0.0.1");
          } catch (err) {
            log.debug({ err, addr }, "port-mapping announcement not sent");
          }
        };
        announce();
        server.schedule(announce, 250, ANNOUNCEMENTS - 1);
      }
    } catch (err) {
      await server.close();
      throw err;
    }
    log.info(
      {
        listen: opts.listen.map((a) => `${a.address}:${opts.port ?? NATPMP_PORT} on ${a.device}`),
        natpmp: opts.config.natpmp,
        pcp: opts.config.pcp,
      },
      "port mapping (NAT-PMP/PCP) listening",
    );
    return server;
  }

  stats(): Record<string, number> {
    return this.service.stats();
  }

  /** Runs `fn` `times` more times, after `delayMs`, then at doubling intervals. */
  private schedule(fn: () => void, delayMs: number, times: number): void {
    if (times <= 0) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
      this.schedule(fn, delayMs * 2, times - 1);
    }, delayMs);
    t.unref();
    this.timers.add(t);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.all(
      this.sockets.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            try {
              s.close(() => resolve());
            } catch {
              resolve(); // never bound
            }
          }),
      ),
    );
  }
}

/** The IPv4 addresses of the named interfaces (the gateway's inside addresses), with their interface. */
export function interfaceAddresses(names: readonly string[]): ListenAddress[] {
  const all = networkInterfaces();
  return names.flatMap((n) =>
    (all[n] ?? []).filter((a) => a.family === "IPv4").map((a) => ({ address: a.address, device: n })),
  );
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}
