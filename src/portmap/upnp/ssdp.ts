// SSDP (UDA 1.1 §1): M-SEARCH parsing, the search targets of the IGD tree, and the text of the
// answers and of the NOTIFY announcements. Pure: ssdp-server.ts owns the sockets and budgets.

import { allDevices, parseUrn, type UpnpDevice } from "./device.ts";

export const SSDP_PORT = 1900;
export const SSDP_GROUP = "239.255.255.250";
/** A search is a few hundred bytes; anything larger is not one (and costs nothing to ignore). */
export const MAX_SEARCH_BYTES = 2048;
const MAX_HEADERS = 32;
export const SERVER_HEADER = "Linux UPnP/1.1 masq/0.1";

export interface Search {
  st: string;
  /** Seconds the answer may be delayed (UDA 1.1 §1.3.2); 0 for a unicast search without MX. */
  mx: number;
}

/** Why a datagram to port 1900 is no search masq answers (counted by the server). */
export type NotSearch = "notify" | "malformed" | "oversized";

/**
 * Parses an M-SEARCH. NOTIFY (other devices' announcements) and anything else that is not a
 * well-formed search (request line, MAN "ssdp:discover", an ST, MX 0-120 when given) are refused.
 */
export function parseSearch(msg: Uint8Array): Search | NotSearch {
  if (msg.length > MAX_SEARCH_BYTES) return "oversized";
  const text = Buffer.from(msg.buffer, msg.byteOffset, msg.length).toString("latin1");
  const lines = text.split("\r\n");
  if (lines[0].startsWith("NOTIFY ")) return "notify";
  if (lines[0] !== "M-SEARCH * HTTP/1.1") return "malformed";
  const h = new Map<string, string>();
  const headers = lines.slice(1, lines.indexOf(""));
  if (headers.length > MAX_HEADERS) return "malformed";
  for (const line of headers) {
    const colon = line.indexOf(":");
    if (colon <= 0) return "malformed";
    h.set(line.slice(0, colon).trim().toUpperCase(), line.slice(colon + 1).trim());
  }
  const st = h.get("ST");
  if (h.get("MAN") !== '"ssdp:discover"' || st === undefined || st === "" || st.length > 256)
    return "malformed";
  const mxText = h.get("MX");
  if (mxText !== undefined && !/^\d{1,3}$/.test(mxText)) return "malformed";
  const mx = mxText === undefined ? 0 : Number(mxText);
  if (mx > 120) return "malformed";
  return { st, mx };
}

/** One thing announced and answered for: its NT/ST and USN (UDA 1.1 §1.1.2, table 1-1). */
export interface Target {
  nt: string;
  usn: string;
}

/**
 * Every target of the tree, most useful for a gateway search first (the IGD, its
 * WANIPConnection, the root device): when an ssdp:all answer is cut to its budget, those go.
 */
export function targets(root: UpnpDevice): Target[] {
  const out: Target[] = [
    { nt: root.type, usn: `${root.udn}::${root.type}` },
    { nt: "upnp:rootdevice", usn: `${root.udn}::upnp:rootdevice` },
  ];
  const devices = allDevices(root);
  const services = devices.flatMap((d) =>
    d.services.map((s) => ({ nt: s.type, usn: `${d.udn}::${s.type}` })),
  );
  services.sort(
    (a, b) => Number(b.nt.includes(":WANIPConnection:")) - Number(a.nt.includes(":WANIPConnection:")),
  );
  out.push(...services);
  for (const d of devices.slice(1)) out.push({ nt: d.type, usn: `${d.udn}::${d.type}` });
  for (const d of devices) out.push({ nt: d.udn, usn: d.udn });
  return out;
}

/**
 * The targets a search for `st` is answered with (UDA 1.1 §1.3.2): all for ssdp:all; for a type,
 * a device or service of that type of the same or a higher version, answered with the version
 * asked for (a v2 device answers a v1 search as v1).
 */
export function matching(root: UpnpDevice, st: string): Target[] {
  const all = targets(root);
  if (st === "ssdp:all") return all;
  if (st === "upnp:rootdevice" || st.startsWith("uuid:")) return all.filter((t) => t.nt === st);
  const want = parseUrn(st);
  if (!want) return [];
  const out: Target[] = [];
  for (const t of all) {
    const have = parseUrn(t.nt);
    if (!have || have.kind !== want.kind || have.name !== want.name || have.version < want.version) continue;
    out.push({ nt: st, usn: t.usn.replace(t.nt, st) });
  }
  return out;
}

export interface Announcer {
  location: string;
  maxAgeSec: number;
  bootId: number;
  configId: number;
}

/** The unicast answer to a search for one target (UDA 1.1 §1.3.3). */
export function searchAnswer(t: Target, a: Announcer): string {
  return [
    "HTTP/1.1 200 OK",
    `CACHE-CONTROL: max-age=${a.maxAgeSec}`,
    "EXT:",
    `LOCATION: ${a.location}`,
    `SERVER: ${SERVER_HEADER}`,
    `ST: ${t.nt}`,
    `USN: ${t.usn}`,
    `BOOTID.UPNP.ORG: ${a.bootId}`,
    `CONFIGID.UPNP.ORG: ${a.configId}`,
    "",
    "",
  ].join("\r\n");
}

/** A NOTIFY ssdp:alive or ssdp:byebye for one target (UDA 1.1 §1.2.2, §1.2.3). */
export function notify(t: Target, a: Announcer, nts: "ssdp:alive" | "ssdp:byebye"): string {
  const alive = nts === "ssdp:alive";
  return [
    "NOTIFY * HTTP/1.1",
    `HOST: ${SSDP_GROUP}:${SSDP_PORT}`,
    ...(alive ? [`CACHE-CONTROL: max-age=${a.maxAgeSec}`, `LOCATION: ${a.location}`] : []),
    `NT: ${t.nt}`,
    `NTS: ${nts}`,
    ...(alive ? [`SERVER: ${SERVER_HEADER}`] : []),
    `USN: ${t.usn}`,
    `BOOTID.UPNP.ORG: ${a.bootId}`,
    `CONFIGID.UPNP.ORG: ${a.configId}`,
    "",
    "",
  ].join("\r\n");
}

/**
 * At most this many bytes of answers per byte of search: SSDP reflection is a known DDoS
 * amplifier (a ~100-byte ssdp:all answered with kilobytes), so an answer never exceeds ten times
 * its search; what does not fit is counted and left out (the most useful targets come first).
 */
export const AMPLIFICATION_LIMIT = 10;

/** The answers to `search` (of `requestBytes`) that fit its budget, and how many did not. */
export function answersWithinBudget(
  root: UpnpDevice,
  search: Search,
  requestBytes: number,
  a: Announcer,
): { answers: string[]; overBudget: number } {
  const budget = requestBytes * AMPLIFICATION_LIMIT;
  const answers: string[] = [];
  let used = 0;
  let overBudget = 0;
  for (const t of matching(root, search.st)) {
    const text = searchAnswer(t, a);
    if (used + text.length > budget) {
      overBudget++;
      continue;
    }
    used += text.length;
    answers.push(text);
  }
  return { answers, overBudget };
}
