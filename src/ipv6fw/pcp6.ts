// PCP MAP (RFC 6887) for IPv6 pinholes: an inside host asks the gateway, over IPv6, to admit
// unsolicited inbound traffic to one of its ports, and the IPv6 filter (filter.ts) opens a pinhole
// for it. masq does not translate IPv6, so this is the PCP server of a simple firewall (RFC 6887
// §11.3, RFC 6092): the external address and port granted are the host's own.
//
// Pcp6Service is the protocol logic (bytes in, bytes out, no sockets: unit-tested against a real
// filter); pcp6-server.ts owns the sockets. Its record of the pinholes (who asked, the nonce, the
// lifetime) is the authority; the filter holds the same lifetime, so a pinhole lapses in the
// packet path on time without the service, which forgets it lazily.
//
// What a requester may do: open, renew and delete pinholes for its own address (the request's
// source, §8.3), at most `maxPerHost` at a time, `maxPinholes` for everyone together; for another
// inside address only with THIRD_PARTY allowed (§13.1). The quota is per requesting address: with
// no translation, the address is the host as the Internet sees it.
import type { PinView } from "../nat/view.ts";
import {
  echoedMapOptions,
  OPCODE_ANNOUNCE,
  OPCODE_MAP,
  PCP_RESULT_NAMES,
  type PcpMapRequest,
  PcpResult,
  parsePcpRequest6,
  pcpAnnounceResponse,
  pcpErrorLifetime,
  pcpErrorResponse,
  pcpMapResponse,
} from "../portmap/pcp.ts";
import { formatIpv6, inPrefix, parseIpv6Prefix } from "./addr6.ts";
import { IPPROTO_TCP, IPPROTO_UDP, type Ip6Filter } from "./filter.ts";

/** RFC 6887 §15: the shortest lifetime a server grants SHOULD be 120 s. */
export const PCP_MIN_LIFETIME = 120;

export interface Pcp6Settings {
  maxPerHost: number;
  maxPinholes: number;
  /** Seconds; granted lifetimes are clamped to [PCP_MIN_LIFETIME, maxLifetime]. */
  maxLifetime: number;
  thirdParty: boolean;
}

export interface Pcp6Log {
  debug(obj: object, msg: string): void;
}

export interface Pcp6ServiceOptions {
  /** The filter, or with several workers their facade (src/datapath/shard-ip6.ts). */
  filter: Pick<Ip6Filter, "openPinhole" | "closePinhole">;
  settings: Pcp6Settings;
  /** The inside IPv6 prefixes (ipv6.inside_networks): only their hosts may ask, only for them. */
  insideNetworks: readonly string[];
  /** Milliseconds, the filter's clock (the datapath's `now`). */
  nowMs: () => number;
  log?: Pcp6Log;
}

/** A pinhole granted by PCP. */
export interface Pcp6Pinhole {
  id: number;
  /** The inside address the pinhole admits traffic to (16 bytes) and as text. */
  addr: Uint8Array;
  address: string;
  proto: "tcp" | "udp";
  port: number;
  /** The address that asked (the quota's owner): the same as `address` unless THIRD_PARTY. */
  owner: string;
  /** The mapping nonce (§11.1), hex: only the client that made a pinhole renews or deletes it. */
  nonce: string;
  expiresMs: number;
}

const PROTOS = { 6: "tcp", 17: "udp" } as const;

export class Pcp6Service {
  private readonly filter: Pick<Ip6Filter, "openPinhole" | "closePinhole">;
  private readonly settings: Pcp6Settings;
  private readonly inside: Array<{ addr: Uint8Array; len: number }>;
  private readonly nowMs: () => number;
  private readonly startMs: number;
  private readonly log: Pcp6Log | undefined;
  /** By `key(address, proto, port)`. */
  private readonly holes = new Map<string, Pcp6Pinhole>();
  private nextId = 1;
  readonly counters: Record<string, number> = {
    pcp_requests: 0,
    pcp_ignored: 0,
    pinholes_created: 0,
    pinholes_renewed: 0,
    pinholes_deleted: 0,
  };

  constructor(o: Pcp6ServiceOptions) {
    this.filter = o.filter;
    this.settings = o.settings;
    this.inside = o.insideNetworks.map((n) => parseIpv6Prefix(n) as { addr: Uint8Array; len: number });
    this.nowMs = o.nowMs;
    this.startMs = o.nowMs();
    this.log = o.log;
  }

  /** Seconds since the service started (§8.5). */
  epochSec(): number {
    return Math.floor((this.nowMs() - this.startMs) / 1000) >>> 0;
  }

  isInside(a: Uint8Array): boolean {
    return this.inside.some((p) => inPrefix(a, p));
  }

  /** The pinholes not yet lapsed (the lapsed ones are forgotten here). */
  live(): Pcp6Pinhole[] {
    const now = this.nowMs();
    for (const [k, h] of this.holes) if (h.expiresMs <= now) this.holes.delete(k);
    return [...this.holes.values()];
  }

  stats(): Record<string, number> {
    return { ...this.counters, pinholes_active: this.live().length };
  }

  /** The pinholes as the listings show pinned mappings (masq conns, masq forward list). */
  pins(): PinView[] {
    const now = this.nowMs();
    return this.live().map((h) => ({
      id: h.id,
      protocol: h.proto,
      inside: { addr: h.address, port: h.port },
      // No translation: the outside endpoint is the inside one (RFC 6887 §11.3, a firewall).
      outside: { addr: h.address, port: h.port },
      remote: "*",
      origin: "ipv6-pcp",
      note: h.owner === h.address ? "" : `for ${h.owner} (THIRD_PARTY)`,
      expiresInSec: Math.max(0, Math.ceil((h.expiresMs - now) / 1000)),
      flows: 0,
    }));
  }

  private count(name: string): void {
    this.counters[name] = (this.counters[name] ?? 0) + 1;
  }

  /** The answer to a datagram from IPv6 `src` (16 bytes) to the PCP port; undefined: none (§8.3). */
  handle(msg: Uint8Array, src: Uint8Array): Uint8Array | undefined {
    const req = parsePcpRequest6(msg, src);
    if (req.kind === "ignore") {
      this.count("pcp_ignored");
      return undefined;
    }
    this.count("pcp_requests");
    const epochSec = this.epochSec();
    const fail = (opcode: number, code: number, why: string): Uint8Array => {
      this.count(`pcp_result_${PCP_RESULT_NAMES[code]?.toLowerCase() ?? code}`);
      this.log?.debug(
        { src: formatIpv6(src), result: PCP_RESULT_NAMES[code], why },
        "ipv6 pcp request refused",
      );
      return pcpErrorResponse(msg, opcode, { result: code, lifetime: pcpErrorLifetime(code), epochSec });
    };
    if (req.kind === "error") return fail(req.opcode, req.result, req.why);
    const opcode = req.kind === "map" ? OPCODE_MAP : OPCODE_ANNOUNCE;
    if (!this.isInside(src)) return fail(opcode, PcpResult.NOT_AUTHORIZED, "not in ipv6.inside_networks");
    if (req.kind === "announce") {
      this.count("pcp_result_success");
      return pcpAnnounceResponse({ result: PcpResult.SUCCESS, lifetime: 0, epochSec });
    }
    return this.map(req, formatIpv6(src), epochSec, fail);
  }

  private map(
    req: PcpMapRequest<Uint8Array>,
    owner: string,
    epochSec: number,
    fail: (opcode: number, code: number, why: string) => Uint8Array,
  ): Uint8Array {
    let addr = req.clientAddr;
    if (req.thirdParty !== undefined) {
      // §13.1: without configuration, a host opens pinholes to its own address only.
      if (!this.settings.thirdParty)
        return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "THIRD_PARTY not allowed (ipv6.pcp_third_party)");
      if (!this.isInside(req.thirdParty))
        return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "THIRD_PARTY address not inside");
      addr = req.thirdParty;
    }
    const address = formatIpv6(addr);
    const nonce = Buffer.from(req.nonce).toString("hex");
    const proto = PROTOS[req.protocol as 6 | 17] as "tcp" | "udp" | undefined;
    const success = (lifetime: number, port: number, options?: Uint8Array) => {
      this.count("pcp_result_success");
      return pcpMapResponse({
        result: PcpResult.SUCCESS,
        lifetime,
        epochSec,
        nonce: req.nonce,
        protocol: req.protocol,
        internalPort: req.internalPort,
        // §11.3, a firewall: the external endpoint is the internal one.
        externalPort: port,
        externalAddr: addr,
        ...(options ? { options } : {}),
      });
    };
    if (req.lifetime === 0) {
      // Deletion (§15): protocol 0 is every protocol, internal port 0 every port; deleting what
      // does not exist succeeds, deleting another client's pinhole (another nonce) does not.
      if (proto === undefined && req.protocol !== 0)
        return fail(OPCODE_MAP, PcpResult.UNSUPP_PROTOCOL, `protocol ${req.protocol}`);
      const doomed = this.live().filter(
        (h) =>
          h.address === address &&
          (proto === undefined || h.proto === proto) &&
          (req.internalPort === 0 || h.port === req.internalPort),
      );
      if (doomed.some((h) => h.nonce !== nonce))
        return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "pinhole belongs to another client (nonce)");
      const now = this.nowMs();
      for (const h of doomed) {
        this.filter.closePinhole(h.addr, h.proto === "tcp" ? IPPROTO_TCP : IPPROTO_UDP, h.port, now);
        this.holes.delete(key(h.address, h.proto, h.port));
        this.count("pinholes_deleted");
      }
      return success(0, req.internalPort);
    }
    if (proto === undefined) return fail(OPCODE_MAP, PcpResult.UNSUPP_PROTOCOL, `protocol ${req.protocol}`);
    // Every port of a host open to the whole Internet is not simple security.
    if (req.internalPort === 0) return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "all-ports pinhole");
    // FILTER (§13.3) is mandatory to process; pinholes admit any remote peer, so it is refused.
    if (req.filters.length > 0) return fail(OPCODE_MAP, PcpResult.UNSUPP_OPTION, "FILTER is not supported");
    // §13.2: a firewall can give no other external endpoint than the internal one.
    const otherPort = req.suggestedExternalPort !== 0 && req.suggestedExternalPort !== req.internalPort;
    const otherAddr =
      !req.suggestedExternalAddr.every((b) => b === 0) &&
      !req.suggestedExternalAddr.every((b, i) => b === addr[i]);
    if (req.preferFailure && (otherPort || otherAddr))
      return fail(OPCODE_MAP, PcpResult.CANNOT_PROVIDE_EXTERNAL, "the external endpoint is the internal one");
    const k = key(address, proto, req.internalPort);
    const now = this.nowMs();
    this.live(); // the lapsed ones count for no quota
    const existing = this.holes.get(k);
    if (existing && existing.nonce !== nonce)
      return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "pinhole belongs to another client (nonce)");
    if (!existing) {
      const held = [...this.holes.values()].filter((h) => h.owner === owner).length;
      if (held >= this.settings.maxPerHost)
        return fail(OPCODE_MAP, PcpResult.USER_EX_QUOTA, `${held} pinholes held (ipv6.pcp_max_per_host)`);
      if (this.holes.size >= this.settings.maxPinholes)
        return fail(OPCODE_MAP, PcpResult.NO_RESOURCES, "ipv6.pcp_max_pinholes reached");
    }
    const lifetime = Math.min(this.settings.maxLifetime, Math.max(PCP_MIN_LIFETIME, req.lifetime));
    const expiresMs = now + lifetime * 1000;
    const ipProto = proto === "tcp" ? IPPROTO_TCP : IPPROTO_UDP;
    if (!this.filter.openPinhole(addr, ipProto, req.internalPort, now, expiresMs))
      return fail(OPCODE_MAP, PcpResult.NO_RESOURCES, "the IPv6 filter table is full");
    if (existing) {
      existing.expiresMs = expiresMs;
      this.count("pinholes_renewed");
    } else {
      this.holes.set(k, {
        id: this.nextId++,
        addr: addr.slice(),
        address,
        proto,
        port: req.internalPort,
        owner,
        nonce,
        expiresMs,
      });
      this.count("pinholes_created");
    }
    return success(lifetime, req.internalPort, echoedMapOptions(req.preferFailure, undefined));
  }
}

function key(address: string, proto: string, port: number): string {
  return `${proto}/${address}/${port}`;
}
