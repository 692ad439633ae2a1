// rtnetlink messages as masq needs them: the IPv4 addresses of an interface and its link, from
// the kernel's RTM_NEWADDR/RTM_DELADDR and RTM_NEWLINK/RTM_DELLINK (multicast events and dump
// answers alike), and the dump requests that read the current state. Pure: the socket is the
// addon's (native/netlink.cc). Whatever a datagram holds, parsing never throws: a truncated or
// malformed message ends the walk or is skipped (rtnetlink(7), netlink(7); the layouts are
// those of linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h and linux/if_link.h).

export const NLMSG_HDRLEN = 16;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const AF_INET = 2;
const IFADDRMSG_LEN = 8;
const IFINFOMSG_LEN = 16;
const RTA_HDRLEN = 4;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_LABEL = 3;
const IFA_F_SECONDARY = 0x01;
const IFLA_IFNAME = 3;
/** ifinfomsg flags: IFF_UP and IFF_RUNNING (the carrier, as `ip link` shows LOWER_UP). */
export const IFF_UP = 0x1;
export const IFF_RUNNING = 0x40;

/** An IPv4 address added to or removed from an interface. */
export interface AddressEvent {
  kind: "address";
  added: boolean;
  ifindex: number;
  /** The interface's own address (IFA_LOCAL, else IFA_ADDRESS), 32-bit unsigned. */
  address: number;
  prefixLen: number;
  /** A secondary address of its prefix (IFA_F_SECONDARY). */
  secondary: boolean;
  /** IFA_LABEL, "" when absent. */
  label: string;
}

/** An interface that appeared, changed (up, down, renamed) or went away. */
export interface LinkEvent {
  kind: "link";
  /** false: RTM_DELLINK, the interface is gone. */
  present: boolean;
  ifindex: number;
  /** IFLA_IFNAME, "" when absent. */
  name: string;
  up: boolean;
  running: boolean;
}

/** The end of a dump, or the kernel's error answer to a request (errno, 0 for an ACK). */
export interface ControlEvent {
  kind: "done" | "error";
  seq: number;
  errno: number;
}

export type RouteEvent = AddressEvent | LinkEvent | ControlEvent;

/** Every message of one datagram, in order; malformed ones are skipped, counted in `bad`. */
export function parseRouteMessages(buf: Uint8Array): { events: RouteEvent[]; bad: number } {
  const events: RouteEvent[] = [];
  let bad = 0;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = dv.getUint32(off, true);
    // A length that does not cover its header or runs past the datagram ends the walk: nothing
    // after it can be found (netlink's NLMSG_OK).
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      bad++;
      break;
    }
    const type = dv.getUint16(off + 4, true);
    const seq = dv.getUint32(off + 8, true);
    const body = off + NLMSG_HDRLEN;
    const end = off + len;
    let ev: RouteEvent | undefined | null = null;
    if (type === RTM_NEWADDR || type === RTM_DELADDR)
      ev = parseAddress(buf, dv, body, end, type === RTM_NEWADDR);
    else if (type === RTM_NEWLINK || type === RTM_DELLINK)
      ev = parseLink(buf, dv, body, end, type === RTM_NEWLINK);
    else if (type === NLMSG_DONE) ev = { kind: "done", seq, errno: 0 };
    else if (type === NLMSG_ERROR)
      ev = end - body >= 4 ? { kind: "error", seq, errno: -dv.getInt32(body, true) } : undefined;
    if (ev === undefined) bad++;
    else if (ev !== null) events.push(ev);
    off += align4(len);
  }
  return { events, bad };
}

/** A dump request (RTM_GETADDR for IPv4, or RTM_GETLINK) with sequence number `seq`. */
export function dumpRequest(type: typeof RTM_GETADDR | typeof RTM_GETLINK, seq: number): Uint8Array {
  const bodyLen = type === RTM_GETADDR ? IFADDRMSG_LEN : IFINFOMSG_LEN;
  const b = new Uint8Array(NLMSG_HDRLEN + bodyLen);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, b.length, true);
  dv.setUint16(4, type, true);
  dv.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
  dv.setUint32(8, seq >>> 0, true);
  b[NLMSG_HDRLEN] = type === RTM_GETADDR ? AF_INET : 0;
  return b;
}

/** undefined: malformed; null: not IPv4 (ignored). */
function parseAddress(
  buf: Uint8Array,
  dv: DataView,
  body: number,
  end: number,
  added: boolean,
): AddressEvent | undefined | null {
  if (end - body < IFADDRMSG_LEN) return undefined;
  if (buf[body] !== AF_INET) return null;
  const prefixLen = buf[body + 1];
  const flags = buf[body + 2];
  const ifindex = dv.getUint32(body + 4, true);
  let local = -1;
  let address = -1;
  let label = "";
  let ok = true;
  walkAttributes(dv, body + IFADDRMSG_LEN, end, (type, at, len) => {
    if (type === IFA_LOCAL || type === IFA_ADDRESS) {
      if (len !== 4) {
        ok = false;
        return;
      }
      const a = dv.getUint32(at, false);
      if (type === IFA_LOCAL) local = a;
      else address = a;
    } else if (type === IFA_LABEL) label = cString(buf, at, len);
  });
  const own = local >= 0 ? local : address;
  if (!ok || own < 0 || prefixLen > 32) return undefined;
  return {
    kind: "address",
    added,
    ifindex,
    address: own,
    prefixLen,
    secondary: (flags & IFA_F_SECONDARY) !== 0,
    label,
  };
}

function parseLink(
  buf: Uint8Array,
  dv: DataView,
  body: number,
  end: number,
  present: boolean,
): LinkEvent | undefined {
  if (end - body < IFINFOMSG_LEN) return undefined;
  const ifindex = dv.getInt32(body + 4, true);
  const flags = dv.getUint32(body + 8, true);
  let name = "";
  walkAttributes(dv, body + IFINFOMSG_LEN, end, (type, at, len) => {
    if (type === IFLA_IFNAME) name = cString(buf, at, len);
  });
  if (ifindex <= 0) return undefined;
  return {
    kind: "link",
    present,
    ifindex,
    name,
    up: (flags & IFF_UP) !== 0,
    running: (flags & IFF_RUNNING) !== 0,
  };
}

/** Calls `fn` for each attribute in [off, end); stops at the first that does not fit (RTA_OK). */
function walkAttributes(
  dv: DataView,
  off: number,
  end: number,
  fn: (type: number, at: number, len: number) => void,
): void {
  while (off + RTA_HDRLEN <= end) {
    const len = dv.getUint16(off, true);
    if (len < RTA_HDRLEN || off + len > end) return;
    // The top bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
    fn(dv.getUint16(off + 2, true) & 0x3fff, off + RTA_HDRLEN, len - RTA_HDRLEN);
    off += align4(len);
  }
}

/** A NUL-terminated (or not) string attribute, printable ASCII only. */
function cString(buf: Uint8Array, at: number, len: number): string {
  let s = "";
  for (let i = 0; i < len && i < 64; i++) {
    const c = buf[at + i];
    if (c === 0) break;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "?";
  }
  return s;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
