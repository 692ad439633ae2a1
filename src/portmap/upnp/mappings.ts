// UPnP IGD's port mappings, through the lease table NAT-PMP and PCP use (leases.ts): each is an
// engine pin of origin "upnp", counted in the same per-host cap (portmap.max_per_host) and global
// cap, granted the same way (the requested outside port where masq can receive it). This adapter
// only adds what IGD asks on top: the mapping is named by its external port (not the inside
// endpoint), a client maps and deletes only its own address (miniupnpd's secure_mode), ports
// below 1024 and the permission rules, and leases as IGD v1 and v2 define them.

import { upnpErrorOf } from "../../errors/codes.ts";
import { formatIpv4 } from "../../packet/addr.ts";
import type { Grant, PortmapLeases, Proto } from "../leases.ts";
import type { PortMapEngine } from "../portmap-engine.ts";
import { permitted, type UpnpConfig } from "./config.ts";
import { UpnpError, UpnpFault } from "./errors.ts";

/** A mapping as IGD's Get*PortMappingEntry report it. */
export interface UpnpEntry {
  remoteHost: string;
  externalPort: number;
  proto: Proto;
  internalPort: number;
  internalClient: string;
  description: string;
  /** Seconds left (0: until deleted). */
  leaseSec: number;
}

export interface AddRequest {
  /** The address the request came from: the only client it may map (606 otherwise). */
  requester: number;
  /** Who asked, as the per-host cap counts (RequestSources' identity). */
  owner: string;
  proto: Proto;
  /** 0: any remote (the wildcard ""). */
  remoteHost: number;
  externalPort: number;
  internalPort: number;
  internalClient: number;
  leaseSec: number;
  description: string;
  /** AddAnyPortMapping (v2): another external port will do. */
  anyPort: boolean;
}

/** UPnP's description string is free text; listings show it, so it is kept short. */
export const MAX_DESCRIPTION = 64;

export class UpnpMappings {
  constructor(
    private readonly leases: PortmapLeases,
    private readonly engine: PortMapEngine,
    private readonly config: UpnpConfig,
  ) {}

  /** UPnP's live mappings, oldest first (the order GetGenericPortMappingEntry indexes). */
  list(): Grant[] {
    return this.leases
      .live()
      .filter((g) => g.origin === "upnp")
      .sort((a, b) => a.pinId - b.pinId);
  }

  /** The mapping on external port `port` (any origin: a port is one mapping's). */
  private onPort(proto: Proto, port: number): Grant | undefined {
    return this.leases.live().find((g) => g.proto === proto && g.outPort === port);
  }

  find(proto: Proto, externalPort: number): Grant | undefined {
    const g = this.onPort(proto, externalPort);
    return g?.origin === "upnp" ? g : undefined;
  }

  entry(g: Grant): UpnpEntry {
    const pin = this.engine.pins.get(g.pinId);
    const expires = pin?.expiresAtSec ?? 0;
    return {
      remoteHost: g.remoteAddr === 0 ? "" : formatIpv4(g.remoteAddr),
      externalPort: g.outPort,
      proto: g.proto,
      internalPort: g.inPort,
      internalClient: formatIpv4(g.inAddr),
      description: pin?.note ?? "",
      leaseSec: expires === 0 ? 0 : Math.max(1, expires - this.engine.clockSec),
    };
  }

  /** The lease a request gets: v1's 0 is "until deleted", v2's 0 the longest (IGD2 §2.3.16). */
  private lease(requested: number): number {
    const max = this.config.maxLifetimeSec;
    if (requested === 0) return this.config.version === 1 ? 0 : max;
    return Math.min(requested, max);
  }

  private allowed(ext: number, client: number, int: number): boolean {
    if (!this.config.allowLowPorts && (ext < 1024 || int < 1024)) return false;
    return permitted(this.config.rules, ext, client, int);
  }

  /** AddPortMapping / AddAnyPortMapping: the external port granted, or a fault. */
  add(r: AddRequest): { externalPort: number; leaseSec: number } {
    // secure_mode: a host maps its own address only (anything else opens ports on another host).
    if (r.internalClient !== r.requester)
      throw new UpnpFault(UpnpError.ACTION_NOT_AUTHORIZED, "NewInternalClient is not the requester");
    let wanted = r.externalPort;
    if (!this.allowed(wanted, r.internalClient, r.internalPort)) {
      if (!r.anyPort) throw new UpnpFault(UpnpError.ACTION_NOT_AUTHORIZED, `port ${wanted} not permitted`);
      wanted = 0; // AddAnyPortMapping: another port may be allowed (checked once granted)
    }
    const holder = wanted === 0 ? undefined : this.onPort(r.proto, wanted);
    if (holder && (holder.inAddr !== r.internalClient || holder.origin !== "upnp")) {
      if (!r.anyPort)
        throw new UpnpFault(
          holder.origin === "upnp"
            ? UpnpError.CONFLICT_IN_MAPPING_ENTRY
            : UpnpError.CONFLICT_WITH_OTHER_MECHANISMS,
          `external port ${wanted} is mapped to ${formatIpv4(holder.inAddr)}:${holder.inPort}`,
        );
      wanted = 0;
    }
    // The client's own mapping of that port to another of its ports is replaced (as miniupnpd does).
    if (holder && holder.inAddr === r.internalClient && holder.inPort !== r.internalPort && wanted !== 0)
      this.leases.unmap("upnp", holder.proto, holder.inAddr, holder.inPort, "");
    const lifetime = this.lease(r.leaseSec);
    const out = this.leases.map({
      origin: "upnp",
      owner: r.owner,
      proto: r.proto,
      inAddr: r.internalClient,
      inPort: r.internalPort,
      suggestedPort: wanted,
      suggestedAddr: 0,
      lifetime,
      nonce: "",
      remoteAddr: r.remoteHost,
      // AddPortMapping names its external port: that one or a refusal. AddAnyPortMapping takes another.
      preferFailure: !r.anyPort,
      lifetimeLimits: { min: 0, max: this.config.maxLifetimeSec },
      note: r.description.slice(0, MAX_DESCRIPTION),
    });
    if (!out.ok) throw new UpnpFault(upnpErrorOf(out.code), out.detail);
    const g = out.grant;
    if (!this.allowed(g.outPort, g.inAddr, g.inPort)) {
      // AddAnyPortMapping got a port the rules refuse: give it back.
      this.leases.unmap("upnp", g.proto, g.inAddr, g.inPort, "");
      throw new UpnpFault(UpnpError.ACTION_NOT_AUTHORIZED, `port ${g.outPort} not permitted`);
    }
    return { externalPort: g.outPort, leaseSec: out.lifetime };
  }

  /** DeletePortMapping: the requester's own mapping on that external port. */
  delete(requester: number, proto: Proto, externalPort: number): void {
    const g = this.find(proto, externalPort);
    if (!g) throw new UpnpFault(UpnpError.NO_SUCH_ENTRY_IN_ARRAY, `no mapping of ${externalPort}/${proto}`);
    if (g.inAddr !== requester)
      throw new UpnpFault(UpnpError.ACTION_NOT_AUTHORIZED, "the mapping belongs to another host");
    this.leases.unmap("upnp", g.proto, g.inAddr, g.inPort, "");
  }

  /** DeletePortMappingRange (v2): the requester's mappings in the range; how many went. */
  deleteRange(requester: number, proto: Proto, first: number, last: number): number {
    let n = 0;
    for (const g of this.list())
      if (g.proto === proto && g.outPort >= first && g.outPort <= last && g.inAddr === requester) {
        this.leases.unmap("upnp", g.proto, g.inAddr, g.inPort, "");
        n++;
      }
    return n;
  }

  /** Every UPnP mapping goes (masq stops). */
  clear(): void {
    for (const g of this.list()) this.leases.unmap("upnp", g.proto, g.inAddr, g.inPort, "");
  }
}
