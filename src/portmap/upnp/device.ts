// The device tree masq presents as a UPnP Internet Gateway Device (IGD v1 or v2):
// InternetGatewayDevice → WANDevice (WANCommonInterfaceConfig:1) → WANConnectionDevice
// (WANIPConnection:1 or :2). SSDP announces it (ssdp.ts), the description server describes it
// (description.ts). Each device has its own UDN, derived from a seed that is stable for one
// gateway (so clients that cached the device find it again after a restart).

import { createHash } from "node:crypto";
import type { IgdVersion } from "./config.ts";

export const SCHEMA = "urn:schemas-upnp-org";

export interface UpnpService {
  /** e.g. "urn:schemas-upnp-org:service:WANIPConnection:1". */
  type: string;
  id: string;
  /** Paths on the description server. */
  scpdPath: string;
  controlPath: string;
  eventPath: string;
}

export interface UpnpDevice {
  type: string;
  udn: string;
  friendlyName: string;
  services: UpnpService[];
  devices: UpnpDevice[];
}

export const WAN_IP_CONNECTION = "WANIPConnection";
export const WAN_COMMON_IFC = "WANCommonInterfaceConfig";

/** A UUID (RFC 4122 layout, name-based, SHA-1: version 5) from `seed`. */
export function uuidFrom(seed: string): string {
  const h = createHash("sha1").update(seed).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** The IGD tree of `version`; `seed` makes the UDNs (e.g. the TUN's name and the host's). */
export function igdTree(version: IgdVersion, seed: string): UpnpDevice {
  const v = version;
  return {
    type: `${SCHEMA}:device:InternetGatewayDevice:${v}`,
    udn: `uuid:${uuidFrom(`${seed}:igd`)}`,
    friendlyName: "masq Internet Gateway",
    services: [],
    devices: [
      {
        type: `${SCHEMA}:device:WANDevice:${v}`,
        udn: `uuid:${uuidFrom(`${seed}:wan`)}`,
        friendlyName: "masq WAN",
        services: [
          {
            type: `${SCHEMA}:service:${WAN_COMMON_IFC}:1`,
            id: `urn:upnp-org:serviceId:${WAN_COMMON_IFC}1`,
            scpdPath: "/WANCfg.xml",
            controlPath: "/ctl/CmnIfCfg",
            eventPath: "/evt/CmnIfCfg",
          },
        ],
        devices: [
          {
            type: `${SCHEMA}:device:WANConnectionDevice:${v}`,
            udn: `uuid:${uuidFrom(`${seed}:wcd`)}`,
            friendlyName: "masq WAN connection",
            services: [
              {
                type: `${SCHEMA}:service:${WAN_IP_CONNECTION}:${v}`,
                id: `urn:upnp-org:serviceId:${WAN_IP_CONNECTION}1`,
                scpdPath: "/WANIPCn.xml",
                controlPath: "/ctl/IPConn",
                eventPath: "/evt/IPConn",
              },
            ],
            devices: [],
          },
        ],
      },
    ],
  };
}

/** Every device of the tree, root first. */
export function allDevices(root: UpnpDevice): UpnpDevice[] {
  return [root, ...root.devices.flatMap(allDevices)];
}

/** The service whose control path is `path`, if any. */
export function serviceAt(root: UpnpDevice, path: string): UpnpService | undefined {
  for (const d of allDevices(root)) for (const s of d.services) if (s.controlPath === path) return s;
  return undefined;
}

/** "urn:…:service:WANIPConnection:2" → { kind: "service", name: "WANIPConnection", version: 2 }. */
export function parseUrn(text: string): { kind: string; name: string; version: number } | undefined {
  const m = /^urn:schemas-upnp-org:(device|service):([A-Za-z0-9_-]{1,64}):([1-9][0-9]{0,2})$/.exec(text);
  return m ? { kind: m[1], name: m[2], version: Number(m[3]) } : undefined;
}
