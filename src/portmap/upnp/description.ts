// The description documents (UDA 1.1 §2): the root device description of the IGD tree
// (device.ts) and the service descriptions (SCPD) of WANIPConnection and
// WANCommonInterfaceConfig, listing exactly the actions actions.ts serves for the version.

import { actionsOf } from "./actions.ts";
import type { IgdVersion } from "./config.ts";
import type { UpnpDevice, WAN_COMMON_IFC, WAN_IP_CONNECTION } from "./device.ts";
import { escapeXml } from "./soap.ts";

function deviceXml(d: UpnpDevice): string {
  const services = d.services
    .map(
      (s) =>
        `<service><serviceType>${s.type}</serviceType><serviceId>${s.id}</serviceId><SCPDURL>${s.scpdPath}</SCPDURL><controlURL>${s.controlPath}</controlURL><eventSubURL>${s.eventPath}</eventSubURL></service>`,
    )
    .join("");
  const devices = d.devices.map(deviceXml).join("");
  return `<device><deviceType>${d.type}</deviceType><friendlyName>${escapeXml(d.friendlyName)}</friendlyName><manufacturer>masq</manufacturer><manufacturerURL>https://example.invalid/masq</manufacturerURL><modelName>masq</modelName><modelNumber>${d.type.endsWith(":2") ? 2 : 1}</modelNumber><UDN>${d.udn}</UDN>${services ? `<serviceList>${services}</serviceList>` : ""}${devices ? `<deviceList>${devices}</deviceList>` : ""}</device>`;
}

/** The root device description, served at /rootDesc.xml. */
export function rootDescription(root: UpnpDevice, configId: number): string {
  return `<?xml version="1.0"?>\r\n<root xmlns="urn:schemas-upnp-org:device-1-0" configId="${configId}"><specVersion><major>1</major><minor>1</minor></specVersion>${deviceXml(root)}</root>\r\n`;
}

type Dir = "in" | "out";
/** Each action's arguments: name, direction, related state variable. */
const ARGS: Record<string, Array<[string, Dir, string]>> = {
  GetExternalIPAddress: [["NewExternalIPAddress", "out", "ExternalIPAddress"]],
  GetStatusInfo: [
    ["NewConnectionStatus", "out", "ConnectionStatus"],
    ["NewLastConnectionError", "out", "LastConnectionError"],
    ["NewUptime", "out", "Uptime"],
  ],
  GetConnectionTypeInfo: [
    ["NewConnectionType", "out", "ConnectionType"],
    ["NewPossibleConnectionTypes", "out", "PossibleConnectionTypes"],
  ],
  GetNATRSIPStatus: [
    ["NewRSIPAvailable", "out", "RSIPAvailable"],
    ["NewNATEnabled", "out", "NATEnabled"],
  ],
  AddPortMapping: [
    ["NewRemoteHost", "in", "RemoteHost"],
    ["NewExternalPort", "in", "ExternalPort"],
    ["NewProtocol", "in", "PortMappingProtocol"],
    ["NewInternalPort", "in", "InternalPort"],
    ["NewInternalClient", "in", "InternalClient"],
    ["NewEnabled", "in", "PortMappingEnabled"],
    ["NewPortMappingDescription", "in", "PortMappingDescription"],
    ["NewLeaseDuration", "in", "PortMappingLeaseDuration"],
  ],
  DeletePortMapping: [
    ["NewRemoteHost", "in", "RemoteHost"],
    ["NewExternalPort", "in", "ExternalPort"],
    ["NewProtocol", "in", "PortMappingProtocol"],
  ],
  GetSpecificPortMappingEntry: [
    ["NewRemoteHost", "in", "RemoteHost"],
    ["NewExternalPort", "in", "ExternalPort"],
    ["NewProtocol", "in", "PortMappingProtocol"],
    ["NewInternalPort", "out", "InternalPort"],
    ["NewInternalClient", "out", "InternalClient"],
    ["NewEnabled", "out", "PortMappingEnabled"],
    ["NewPortMappingDescription", "out", "PortMappingDescription"],
    ["NewLeaseDuration", "out", "PortMappingLeaseDuration"],
  ],
  GetGenericPortMappingEntry: [
    ["NewPortMappingIndex", "in", "PortMappingNumberOfEntries"],
    ["NewRemoteHost", "out", "RemoteHost"],
    ["NewExternalPort", "out", "ExternalPort"],
    ["NewProtocol", "out", "PortMappingProtocol"],
    ["NewInternalPort", "out", "InternalPort"],
    ["NewInternalClient", "out", "InternalClient"],
    ["NewEnabled", "out", "PortMappingEnabled"],
    ["NewPortMappingDescription", "out", "PortMappingDescription"],
    ["NewLeaseDuration", "out", "PortMappingLeaseDuration"],
  ],
  AddAnyPortMapping: [
    ["NewRemoteHost", "in", "RemoteHost"],
    ["NewExternalPort", "in", "ExternalPort"],
    ["NewProtocol", "in", "PortMappingProtocol"],
    ["NewInternalPort", "in", "InternalPort"],
    ["NewInternalClient", "in", "InternalClient"],
    ["NewEnabled", "in", "PortMappingEnabled"],
    ["NewPortMappingDescription", "in", "PortMappingDescription"],
    ["NewLeaseDuration", "in", "PortMappingLeaseDuration"],
    ["NewReservedPort", "out", "ExternalPort"],
  ],
  DeletePortMappingRange: [
    ["NewStartPort", "in", "ExternalPort"],
    ["NewEndPort", "in", "ExternalPort"],
    ["NewProtocol", "in", "PortMappingProtocol"],
    ["NewManage", "in", "A_ARG_TYPE_Manage"],
  ],
  GetListOfPortMappings: [
    ["NewStartPort", "in", "ExternalPort"],
    ["NewEndPort", "in", "ExternalPort"],
    ["NewProtocol", "in", "PortMappingProtocol"],
    ["NewManage", "in", "A_ARG_TYPE_Manage"],
    ["NewNumberOfPorts", "in", "PortMappingNumberOfEntries"],
    ["NewPortListing", "out", "A_ARG_TYPE_PortListing"],
  ],
  GetCommonLinkProperties: [
    ["NewWANAccessType", "out", "WANAccessType"],
    ["NewLayer1UpstreamMaxBitRate", "out", "Layer1UpstreamMaxBitRate"],
    ["NewLayer1DownstreamMaxBitRate", "out", "Layer1DownstreamMaxBitRate"],
    ["NewPhysicalLinkStatus", "out", "PhysicalLinkStatus"],
  ],
  GetTotalBytesSent: [["NewTotalBytesSent", "out", "TotalBytesSent"]],
  GetTotalBytesReceived: [["NewTotalBytesReceived", "out", "TotalBytesReceived"]],
  GetTotalPacketsSent: [["NewTotalPacketsSent", "out", "TotalPacketsSent"]],
  GetTotalPacketsReceived: [["NewTotalPacketsReceived", "out", "TotalPacketsReceived"]],
};

/** State variables: data type, evented, allowed values. */
const VARS: Record<string, [string, boolean, string[]?]> = {
  ExternalIPAddress: ["string", true],
  ConnectionStatus: [
    "string",
    true,
    ["Unconfigured", "Connecting", "Connected", "PendingDisconnect", "Disconnecting", "Disconnected"],
  ],
  LastConnectionError: ["string", false, ["ERROR_NONE"]],
  Uptime: ["ui4", false],
  ConnectionType: ["string", false],
  PossibleConnectionTypes: ["string", true, ["Unconfigured", "IP_Routed", "IP_Bridged"]],
  RSIPAvailable: ["boolean", false],
  NATEnabled: ["boolean", false],
  RemoteHost: ["string", false],
  ExternalPort: ["ui2", false],
  InternalPort: ["ui2", false],
  PortMappingProtocol: ["string", false, ["TCP", "UDP"]],
  InternalClient: ["string", false],
  PortMappingEnabled: ["boolean", false],
  PortMappingDescription: ["string", false],
  PortMappingLeaseDuration: ["ui4", false],
  PortMappingNumberOfEntries: ["ui2", true],
  A_ARG_TYPE_Manage: ["boolean", false],
  A_ARG_TYPE_PortListing: ["string", false],
  WANAccessType: ["string", false, ["DSL", "POTS", "Cable", "Ethernet"]],
  Layer1UpstreamMaxBitRate: ["ui4", false],
  Layer1DownstreamMaxBitRate: ["ui4", false],
  PhysicalLinkStatus: ["string", true, ["Up", "Down"]],
  TotalBytesSent: ["ui4", false],
  TotalBytesReceived: ["ui4", false],
  TotalPacketsSent: ["ui4", false],
  TotalPacketsReceived: ["ui4", false],
};

/** The SCPD of `service` (WANIPConnection or WANCommonInterfaceConfig) for `version`. */
export function scpd(service: typeof WAN_IP_CONNECTION | typeof WAN_COMMON_IFC, version: IgdVersion): string {
  const actions = actionsOf(service, version);
  const used = new Set<string>();
  const actionXml = actions
    .map((name) => {
      const args = (ARGS[name] ?? [])
        .map(([arg, dir, rel]) => {
          used.add(rel);
          return `<argument><name>${arg}</name><direction>${dir}</direction><relatedStateVariable>${rel}</relatedStateVariable></argument>`;
        })
        .join("");
      return `<action><name>${name}</name><argumentList>${args}</argumentList></action>`;
    })
    .join("");
  const varXml = [...used]
    .map((name) => {
      const [type, evented, allowed] = VARS[name];
      const list = allowed
        ? `<allowedValueList>${allowed.map((a) => `<allowedValue>${a}</allowedValue>`).join("")}</allowedValueList>`
        : "";
      return `<stateVariable sendEvents="${evented ? "yes" : "no"}"><name>${name}</name><dataType>${type}</dataType>${list}</stateVariable>`;
    })
    .join("");
  return `<?xml version="1.0"?>\r\n<scpd xmlns="urn:schemas-upnp-org:service-1-0"><specVersion><major>1</major><minor>1</minor></specVersion><actionList>${actionXml}</actionList><serviceStateTable>${varXml}</serviceStateTable></scpd>\r\n`;
}
