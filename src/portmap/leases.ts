// The mappings granted through NAT-PMP, PCP and UPnP IGD: each is an engine pin, and this table remembers
// who asked for it (origin, owner, PCP nonce), so that only that client renews or deletes it and
// the per-host and global caps can be counted. Renewal keeps the outside port (RFC 6886 §3.3,
// RFC 6887 §11.3). A refusal carries its code (errors/codes.ts); the protocol answers with it.

import type { ErrorCode } from "../errors/codes.ts";
import { defaultPortShare } from "../nat/port-quota.ts";
import { formatIpv4 } from "../packet/addr.ts";
import type { PortmapConfig } from "./config.ts";
import type { MappedPortSteering } from "./port-steering.ts";
import type { PortMapEngine } from "./portmap-engine.ts";
import type { PortmapLog } from "./service.ts";

/** Pin refusals that concern only the suggested outside address or port (see `map`). */
const SUGGESTION_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "MASQ_ERR_PORT_IN_USE",
  "MASQ_ERR_ALREADY_MAPPED",
  "MASQ_ERR_NOT_PUBLIC_ADDRESS",
]);

export type Origin = "natpmp" | "pcp" | "upnp";
export type Proto = "tcp" | "udp";

/** A mapping granted through NAT-PMP or PCP; the pin in the engine is the truth about liveness. */
export interface Grant {
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
export type MapOutcome =
  | { ok: true; grant: Grant; lifetime: number }
  | { ok: false; code: ErrorCode; detail: string };

/** What a client asks for (both protocols). */
export interface MapRequest {
  origin: Origin;
  /** Who asked (RequestSources' identity). */
  owner: string;
  proto: Proto;
  inAddr: number;
  inPort: number;
  /** The outside port and address the client suggested (0: none). */
  suggestedPort: number;
  suggestedAddr: number;
  lifetime: number;
  /** PCP: the client's nonce (hex); NAT-PMP: "". */
  nonce: string;
  /** PCP FILTER: the one remote admitted (0: any). */
  remoteAddr: number;
  /** PCP PREFER_FAILURE: the suggestion or nothing (RFC 6887 §13.2). */
  preferFailure: boolean;
  /**
   * The granted lifetime's bounds in seconds (default: portmap.min_lifetime and max_lifetime).
   * With a minimum of 0, a lifetime of 0 is granted as "until deleted" (UPnP IGD v1's lease 0).
   */
  lifetimeLimits?: { min: number; max: number };
  /** Shown by the listings (UPnP's NewPortMappingDescription). */
  note?: string;
}

export class PortmapLeases {
  private readonly grants = new Map<string, Grant>();

  constructor(
    private readonly engine: PortMapEngine,
    private readonly config: PortmapConfig,
    private readonly log: PortmapLog,
    /** Whether an address is on an inside network. */
    private readonly isInside: (addr: number) => boolean,
    /** Counts an event in the counters of the protocol that asked. */
    private readonly count: (name: string, origin: Origin) => void,
    /** Interface mode: the rules of mapped ports beyond masq's range (absent: only the range). */
    private readonly steering?: MappedPortSteering,
  ) {}

  /** The public address changed (the engine moved the pins): the grants say so, and renew on it. */
  moveAddress(from: number, to: number): void {
    for (const g of this.grants.values()) if (g.outAddr === from) g.outAddr = to;
  }

  /** Live grants (pins that lapsed in the engine are forgotten here too). */
  live(): Grant[] {
    const out: Grant[] = [];
    for (const [k, g] of this.grants) {
      if (this.engine.pins.get(g.pinId) === undefined) {
        this.grants.delete(k);
        this.steering?.release(g.proto, g.outPort);
      } else out.push(g);
    }
    return out;
  }

  /**
   * After `masq stop --keep-state`: takes up the grants the stopped masq held, whose pins came
   * back with the engine's state (nothing is pinned again: the mapping never lapses). A grant
   * whose pin is gone (it lapsed while masq was down) or is no longer this origin's is left out.
   * A mapped port beyond masq's range gets its rules again (the new run redoes them).
   */
  adopt(grants: readonly Grant[]): { adopted: number; lapsed: number } {
    let adopted = 0;
    for (const g of grants) {
      const pin = this.engine.pins.get(g.pinId);
      if (pin === undefined || pin.origin !== g.origin) continue;
      this.grants.set(`${g.proto}/${g.inAddr}/${g.inPort}`, { ...g });
      if (this.steering?.needs(g.outPort)) {
        void this.steering.prepare(g.proto, g.outPort);
        this.steering.hold(g.proto, g.outPort);
        this.steering.settle(g.proto, g.outPort);
      }
      adopted++;
    }
    const lapsed = grants.length - adopted;
    // Before the servers count anything: logged, not counted.
    this.log.info({ adopted, lapsed }, "port mappings taken up from the stopped masq (lapsed ones left out)");
    return { adopted, lapsed };
  }

  /** The cap on port-mapping mappings of one protocol, all hosts together. */
  private globalCap(proto: Proto): number {
    return this.config.maxMappings > 0
      ? this.config.maxMappings
      : defaultPortShare(this.engine.config.ports[proto]);
  }

  private clampLifetime(requested: number, limits?: { min: number; max: number }): number {
    const { min, max } = limits ?? { min: this.config.minLifetime, max: this.config.maxLifetime };
    return Math.min(max, Math.max(min, requested));
  }

  /**
   * A suggested outside port masq can actually receive on: in pool mode any; in interface mode
   * its own range, or a port steered into it for this request (port-steering.ts).
   */
  private usablePort(proto: Proto, port: number): boolean {
    if (port === 0) return false;
    if (this.engine.config.mode === "pool") return true;
    const r = this.engine.config.ports[proto];
    return (port >= r.first && port <= r.last) || this.steering?.isSteered(proto, port) === true;
  }

  /**
   * Grants (or renews) the mapping `r` asks for, as an engine pin; a refusal carries its code.
   */
  map(r: MapRequest): MapOutcome {
    if (!this.isInside(r.inAddr))
      return { ok: false, code: "MASQ_ERR_NOT_INSIDE", detail: "not an inside host" };
    // Interface mode while the outside interface has no address: nothing to map to yet.
    if (this.engine.config.outside.length === 0 || this.engine.addressless)
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
        this.count("refused_global_cap", r.origin);
        return {
          ok: false,
          code: "MASQ_ERR_PORTMAP_FULL",
          detail: `${all} ${r.proto} mappings (portmap.max_mappings)`,
        };
      }
    }
    const lifetime = this.clampLifetime(r.lifetime, r.lifetimeLimits);
    // 0 only where the limits allow it: a pin that never lapses (engine pins: 0 = never).
    const expiresAtSec = lifetime === 0 ? 0 : this.engine.clockSec + lifetime;
    const base = {
      proto: r.proto,
      inAddr: r.inAddr,
      inPort: r.inPort,
      expiresAtSec,
      origin: r.origin,
      ...(r.remoteAddr !== 0 ? { remoteAddr: r.remoteAddr } : {}),
      ...(r.note ? { note: r.note } : {}),
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
    if (old?.outPort !== grant.outPort) {
      this.steering?.hold(grant.proto, grant.outPort);
      if (old) this.steering?.release(old.proto, old.outPort);
    }
    this.count(old ? "mappings_renewed" : "mappings_created", r.origin);
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
  unmap(origin: Origin, proto: Proto, inAddr: number, inPort: number, nonce: string): "ok" | "refused" {
    const targets = this.live().filter(
      (g) => g.proto === proto && g.inAddr === inAddr && (inPort === 0 || g.inPort === inPort),
    );
    // Deleting what does not exist succeeds (RFC 6886 §3.4, RFC 6887 §15).
    if (inPort !== 0 && targets.some((g) => g.origin !== origin || g.nonce !== nonce)) return "refused";
    for (const g of targets) {
      if (g.origin !== origin || g.nonce !== nonce) continue;
      this.engine.unpin(g.pinId);
      this.grants.delete(`${g.proto}/${g.inAddr}/${g.inPort}`);
      this.steering?.release(g.proto, g.outPort);
      this.count("mappings_deleted", origin);
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
}
