// The IGD control actions: WANIPConnection:1 (and :2's AddAnyPortMapping,
// DeletePortMappingRange, GetListOfPortMappings when masq presents IGD v2) and
// WANCommonInterfaceConfig:1. Each takes the typed arguments (args.ts), acts through the
// mappings adapter (mappings.ts) and returns its out arguments in the order the SCPD lists them;
// a refusal throws a UpnpFault with the service's error code.

import { formatIpv4 } from "../../packet/addr.ts";
import { ActionArgs } from "./args.ts";
import type { IgdVersion } from "./config.ts";
import { parseUrn, WAN_COMMON_IFC, WAN_IP_CONNECTION } from "./device.ts";
import { UpnpError, UpnpFault } from "./errors.ts";
import type { UpnpEntry, UpnpMappings } from "./mappings.ts";
import { escapeXml, type SoapRequest } from "./soap.ts";

/** The WAN side's traffic as the IGD reports it (masq's counters: what it translated). */
export interface WanCounters {
  bytesSent: number;
  bytesReceived: number;
  packetsSent: number;
  packetsReceived: number;
}

export interface ControlContext {
  version: IgdVersion;
  mappings: UpnpMappings;
  /** The public address an inside host's mappings get (0: none yet). */
  externalAddress(client: number): number;
  uptimeSec(): number;
  wanCounters(): WanCounters;
}

/** Who called: the TCP peer's address and its identity for the per-host cap. */
export interface Caller {
  addr: number;
  owner: string;
}

export type OutArgs = Array<[string, string | number | { cdata: string }]>;

/** The actions of each service, by IGD version (v2 keeps v1's and adds three). */
const WAN_IP_V1 = [
  "GetExternalIPAddress",
  "GetStatusInfo",
  "GetConnectionTypeInfo",
  "GetNATRSIPStatus",
  "AddPortMapping",
  "DeletePortMapping",
  "GetSpecificPortMappingEntry",
  "GetGenericPortMappingEntry",
] as const;
const WAN_IP_V2 = ["AddAnyPortMapping", "DeletePortMappingRange", "GetListOfPortMappings"] as const;
const COMMON_IFC = [
  "GetCommonLinkProperties",
  "GetTotalBytesSent",
  "GetTotalBytesReceived",
  "GetTotalPacketsSent",
  "GetTotalPacketsReceived",
] as const;

export function actionsOf(service: string, version: IgdVersion): readonly string[] {
  if (service === WAN_COMMON_IFC) return COMMON_IFC;
  if (service === WAN_IP_CONNECTION) return version === 2 ? [...WAN_IP_V1, ...WAN_IP_V2] : WAN_IP_V1;
  return [];
}

/** ui4 counters wrap (UDA 1.1 §2.5: 0..2^32-1), as a router's interface counters do. */
const ui4 = (n: number) => Math.floor(n) % 2 ** 32;

function entryArgs(e: UpnpEntry, withKey: boolean): OutArgs {
  const key: OutArgs = withKey
    ? [
        ["NewRemoteHost", e.remoteHost],
        ["NewExternalPort", e.externalPort],
        ["NewProtocol", e.proto.toUpperCase()],
      ]
    : [];
  return [
    ...key,
    ["NewInternalPort", e.internalPort],
    ["NewInternalClient", e.internalClient],
    ["NewEnabled", 1],
    ["NewPortMappingDescription", e.description],
    ["NewLeaseDuration", e.leaseSec],
  ];
}

/** GetListOfPortMappings' document (WANIPConnection:2 §2.6, the PortMappingList schema). */
function portListing(entries: UpnpEntry[]): string {
  const items = entries.map(
    (e) =>
      `<p:PortMappingEntry><p:NewRemoteHost>${e.remoteHost}</p:NewRemoteHost><p:NewExternalPort>${e.externalPort}</p:NewExternalPort><p:NewProtocol>${e.proto.toUpperCase()}</p:NewProtocol><p:NewInternalPort>${e.internalPort}</p:NewInternalPort><p:NewInternalClient>${e.internalClient}</p:NewInternalClient><p:NewEnabled>1</p:NewEnabled><p:NewDescription>${escapeXml(e.description)}</p:NewDescription><p:NewLeaseTime>${e.leaseSec}</p:NewLeaseTime></p:PortMappingEntry>`,
  );
  return `<?xml version="1.0" encoding="UTF-8"?><p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:schemas-upnp-org:gw:WANIPConnection http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">${items.join("")}</p:PortMappingList>`;
}

/**
 * Runs `req` against the service of type `serviceType` at the control URL it came to. An action
 * the service (of this IGD version) lacks, or a request for another service, is 401.
 */
export function runAction(
  ctx: ControlContext,
  serviceType: string,
  req: SoapRequest,
  caller: Caller,
): OutArgs {
  const have = parseUrn(serviceType);
  const asked = parseUrn(req.serviceType);
  if (!have || !asked || asked.name !== have.name || asked.kind !== "service" || asked.version > have.version)
    throw new UpnpFault(UpnpError.INVALID_ACTION, `${req.serviceType} is not served here`);
  if (!actionsOf(have.name, ctx.version).includes(req.action))
    throw new UpnpFault(UpnpError.INVALID_ACTION, `no action ${req.action}`);
  const a = new ActionArgs(req.args);
  const m = ctx.mappings;
  switch (req.action) {
    case "GetExternalIPAddress": {
      const ext = ctx.externalAddress(caller.addr);
      return [["NewExternalIPAddress", ext === 0 ? "" : formatIpv4(ext)]];
    }
    case "GetStatusInfo":
      return [
        ["NewConnectionStatus", ctx.externalAddress(caller.addr) === 0 ? "Disconnected" : "Connected"],
        ["NewLastConnectionError", "ERROR_NONE"],
        ["NewUptime", ui4(ctx.uptimeSec())],
      ];
    case "GetConnectionTypeInfo":
      return [
        ["NewConnectionType", "IP_Routed"],
        ["NewPossibleConnectionTypes", "IP_Routed"],
      ];
    case "GetNATRSIPStatus":
      return [
        ["NewRSIPAvailable", 0],
        ["NewNATEnabled", 1],
      ];
    case "AddPortMapping":
    case "AddAnyPortMapping": {
      const any = req.action === "AddAnyPortMapping";
      const remoteHost = a.address("NewRemoteHost", true);
      const externalPort = a.ui2("NewExternalPort");
      const proto = a.protocol();
      const internalPort = a.ui2("NewInternalPort");
      const internalClient = a.address("NewInternalClient", false);
      const enabled = a.boolean("NewEnabled");
      const description = a.optionalString("NewPortMappingDescription");
      const leaseSec = a.ui4("NewLeaseDuration");
      if (externalPort === 0 && !any)
        throw new UpnpFault(UpnpError.WILDCARD_NOT_PERMITTED_IN_EXT_PORT, "NewExternalPort 0");
      if (internalPort === 0)
        throw new UpnpFault(
          ctx.version === 2 ? UpnpError.WILDCARD_NOT_PERMITTED_IN_INT_PORT : UpnpError.INVALID_ARGS,
          "NewInternalPort 0",
        );
      // A disabled entry would be a mapping that maps nothing: masq keeps only live ones.
      if (!enabled)
        throw new UpnpFault(UpnpError.INVALID_ARGS, "NewEnabled 0 (disabled mappings are not kept)");
      const got = m.add({
        requester: caller.addr,
        owner: caller.owner,
        proto,
        remoteHost,
        externalPort,
        internalPort,
        internalClient,
        leaseSec,
        description,
        anyPort: any,
      });
      return any ? [["NewReservedPort", got.externalPort]] : [];
    }
    case "DeletePortMapping": {
      a.address("NewRemoteHost", true);
      const port = a.ui2("NewExternalPort");
      m.delete(caller.addr, a.protocol(), port);
      return [];
    }
    case "GetSpecificPortMappingEntry": {
      a.address("NewRemoteHost", true);
      const port = a.ui2("NewExternalPort");
      const g = m.find(a.protocol(), port);
      if (!g) throw new UpnpFault(UpnpError.NO_SUCH_ENTRY_IN_ARRAY, `no mapping of ${port}`);
      return entryArgs(m.entry(g), false);
    }
    case "GetGenericPortMappingEntry": {
      const i = a.ui2("NewPortMappingIndex");
      const g = m.list()[i];
      if (!g) throw new UpnpFault(UpnpError.SPECIFIED_ARRAY_INDEX_INVALID, `no entry ${i}`);
      return entryArgs(m.entry(g), true);
    }
    case "DeletePortMappingRange": {
      const first = a.ui2("NewStartPort");
      const last = a.ui2("NewEndPort");
      const proto = a.protocol();
      a.boolean("NewManage");
      if (first > last) throw new UpnpFault(UpnpError.INCONSISTENT_PARAMETERS, "NewStartPort > NewEndPort");
      if (m.deleteRange(caller.addr, proto, first, last) === 0)
        throw new UpnpFault(
          UpnpError.PORT_MAPPING_NOT_FOUND,
          `none of ${formatIpv4(caller.addr)}'s in ${first}-${last}`,
        );
      return [];
    }
    case "GetListOfPortMappings": {
      const first = a.ui2("NewStartPort");
      const last = a.ui2("NewEndPort");
      const proto = a.protocol();
      const manage = a.boolean("NewManage");
      const count = a.ui2("NewNumberOfPorts");
      if (first > last) throw new UpnpFault(UpnpError.INCONSISTENT_PARAMETERS, "NewStartPort > NewEndPort");
      // NewManage 0: the caller's own mappings (WANIPConnection:2 §2.5.20); 1: all (read only).
      const entries = m
        .list()
        .filter((g) => g.proto === proto && g.outPort >= first && g.outPort <= last)
        .filter((g) => manage || g.inAddr === caller.addr)
        .sort((x, y) => x.outPort - y.outPort)
        .slice(0, count === 0 ? undefined : count)
        .map((g) => m.entry(g));
      if (entries.length === 0)
        throw new UpnpFault(UpnpError.PORT_MAPPING_NOT_FOUND, `no mapping in ${first}-${last}`);
      return [["NewPortListing", { cdata: portListing(entries) }]];
    }
    case "GetCommonLinkProperties":
      return [
        ["NewWANAccessType", "Ethernet"],
        ["NewLayer1UpstreamMaxBitRate", 0],
        ["NewLayer1DownstreamMaxBitRate", 0],
        ["NewPhysicalLinkStatus", ctx.externalAddress(caller.addr) === 0 ? "Down" : "Up"],
      ];
    case "GetTotalBytesSent":
      return [["NewTotalBytesSent", ui4(ctx.wanCounters().bytesSent)]];
    case "GetTotalBytesReceived":
      return [["NewTotalBytesReceived", ui4(ctx.wanCounters().bytesReceived)]];
    case "GetTotalPacketsSent":
      return [["NewTotalPacketsSent", ui4(ctx.wanCounters().packetsSent)]];
    case "GetTotalPacketsReceived":
      return [["NewTotalPacketsReceived", ui4(ctx.wanCounters().packetsReceived)]];
  }
  throw new UpnpFault(UpnpError.INVALID_ACTION, `no action ${req.action}`);
}
