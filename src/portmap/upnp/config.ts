// The [upnp] settings of the UPnP IGD server, their defaults, and miniupnpd-style permission
// rules ("allow 1024-65535 192.168.0.0/24 1024-65535": external ports, inside client, inside
// ports), evaluated first match wins.

import { parseIpv4, prefixMask } from "../../packet/addr.ts";

export type IgdVersion = 1 | 2;

export interface UpnpPermission {
  allow: boolean;
  external: { first: number; last: number };
  client: { addr: number; mask: number };
  internal: { first: number; last: number };
}

export interface UpnpConfig {
  enabled: boolean;
  /** IGD v1 by default: many clients (Xbox One, PS4, Windows) break on a v2 description. */
  version: IgdVersion;
  /** TCP port of the description and control server on each inside address (0: the kernel picks). */
  httpPort: number;
  /** Seconds between NOTIFY ssdp:alive rounds (UDA 1.1 §1.2.2: well inside the max-age). */
  notifyIntervalSec: number;
  /** A lease is granted at most this long; in v2 a lease of 0 means this long (IGD2 §2.3.16). */
  maxLifetimeSec: number;
  /** External or internal ports below 1024 (the gateway's and hosts' privileged services). */
  allowLowPorts: boolean;
  /** Permission rules, first match wins; none matching: allowed (the other checks still apply). */
  rules: UpnpPermission[];
}

/** IGD2 WANIPConnection:2 §2.3.16: a lease is at most a week. */
export const UPNP_MAX_LIFETIME_SEC = 604_800;

export function defaultUpnpConfig(): UpnpConfig {
  return {
    enabled: false,
    version: 1,
    httpPort: 0,
    notifyIntervalSec: 300,
    maxLifetimeSec: UPNP_MAX_LIFETIME_SEC,
    allowLowPorts: false,
    rules: [],
  };
}

function portRange(text: string): { first: number; last: number } | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) return undefined;
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  return first <= last && last <= 65535 ? { first, last } : undefined;
}

/** One rule "allow|deny <ext ports> <addr[/len]> <int ports>"; a string naming the problem when bad. */
export function parsePermission(text: string): UpnpPermission | string {
  const f = text.trim().split(/\s+/);
  if (f.length !== 4 || (f[0] !== "allow" && f[0] !== "deny"))
    return 'must be "allow|deny <external ports> <address/len> <internal ports>", e.g. "allow 1024-65535 192.168.0.0/24 1024-65535"';
  const external = portRange(f[1]);
  const internal = portRange(f[3]);
  const [a, l] = f[2].split("/");
  const addr = parseIpv4(a);
  const len = l === undefined ? 32 : /^\d{1,2}$/.test(l) ? Number(l) : Number.NaN;
  if (external === undefined) return `${JSON.stringify(f[1])} is not a port or a range like 1024-65535`;
  if (internal === undefined) return `${JSON.stringify(f[3])} is not a port or a range like 1024-65535`;
  if (addr === undefined || !(len >= 0 && len <= 32))
    return `${JSON.stringify(f[2])} is not an IPv4 address or prefix`;
  const mask = prefixMask(len);
  return { allow: f[0] === "allow", external, client: { addr: (addr & mask) >>> 0, mask }, internal };
}

/** Whether the rules let `client` map external port `ext` to its port `int` (first match wins). */
export function permitted(
  rules: readonly UpnpPermission[],
  ext: number,
  client: number,
  int: number,
): boolean {
  for (const r of rules) {
    if (ext < r.external.first || ext > r.external.last) continue;
    if (int < r.internal.first || int > r.internal.last) continue;
    if ((client & r.client.mask) >>> 0 !== r.client.addr) continue;
    return r.allow;
  }
  return true;
}
