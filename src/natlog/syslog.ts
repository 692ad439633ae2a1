// NAT events as RFC 5424 syslog messages with structured data, in the shape of VPP's NAT syslog
// (src/plugins/nat/lib/nat_syslog.c): message ids APMADD/APMDEL for a mapping (address and port
// mapping) made and gone with SD-ID "napmap", SADD/SDEL for a session with "nsess", and the same
// SD-PARAM names (ISADDR, ISPORT, XSADDR, XSPORT, PROTO, XDADDR, XDPORT). A host refused at its
// quota and the port blocks of a later feature have no VPP names; masq adds QUOTA ("nquota") and
// PBADD/PBDEL ("npblk") in the same style.
//
// npm's syslog clients (syslog-client, syslog-pro, rsyslog) own their sockets, and the most used
// one writes no structured data and frames TCP by newline: the log needs the message alone, so
// the sender can bound and count what it queues (sender.ts).

import {
  EV_MAPPING_CREATED,
  EV_MAPPING_DELETED,
  EV_PORT_BLOCK_ADDED,
  EV_PORT_BLOCK_DELETED,
  EV_QUOTA_EXCEEDED,
  EV_SESSION_CREATED,
  EV_SESSION_DELETED,
  type NatEvent,
} from "../nat/nat-events.ts";
import { flowProtocolName } from "../nat/view.ts";
import { formatIpv4 } from "../packet/addr.ts";

/** RFC 5424 §6.2.1: local0, the facility VPP's NAT log uses. */
export const FACILITY_LOCAL0 = 16;
const SEVERITY_WARNING = 4;
const SEVERITY_INFO = 6;

export interface SyslogHeader {
  /** HOSTNAME (RFC 5424 §6.2.4); "-" when unknown. */
  hostname: string;
  appName: string;
  procId: string;
  facility: number;
  /** Add the remote endpoint (XDADDR, XDPORT): RFC 6888 REQ-12 says not by default. */
  destination: boolean;
}

const MSG_ID: Record<number, string> = {
  [EV_MAPPING_CREATED]: "APMADD",
  [EV_MAPPING_DELETED]: "APMDEL",
  [EV_SESSION_CREATED]: "SADD",
  [EV_SESSION_DELETED]: "SDEL",
  [EV_QUOTA_EXCEEDED]: "QUOTA",
  [EV_PORT_BLOCK_ADDED]: "PBADD",
  [EV_PORT_BLOCK_DELETED]: "PBDEL",
};

const SD_ID: Record<number, string> = {
  [EV_MAPPING_CREATED]: "napmap",
  [EV_MAPPING_DELETED]: "napmap",
  [EV_SESSION_CREATED]: "nsess",
  [EV_SESSION_DELETED]: "nsess",
  [EV_QUOTA_EXCEEDED]: "nquota",
  [EV_PORT_BLOCK_ADDED]: "npblk",
  [EV_PORT_BLOCK_DELETED]: "npblk",
};

const WHAT: Record<number, string> = {
  [EV_MAPPING_CREATED]: "mapping created",
  [EV_MAPPING_DELETED]: "mapping deleted",
  [EV_SESSION_CREATED]: "session created",
  [EV_SESSION_DELETED]: "session deleted",
  [EV_QUOTA_EXCEEDED]: "port quota exceeded",
  [EV_PORT_BLOCK_ADDED]: "port block allocated",
  [EV_PORT_BLOCK_DELETED]: "port block released",
};

/** RFC 5424 §6.3.3: '"', '\' and ']' are escaped in a PARAM-VALUE. */
export function sdValue(text: string): string {
  return text.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** RFC 5424 §6.2: a header field is 1..max printable US-ASCII characters, else the NILVALUE. */
export function headerField(text: string, max: number): string {
  return text.length > 0 && text.length <= max && /^[\x21-\x7e]+$/.test(text) ? text : "-";
}

/** The message for event `e` that happened at `wallMs` (ms since the epoch), without framing. */
export function syslogMessage(e: NatEvent, wallMs: number, h: SyslogHeader): string {
  const severity = e.kind === EV_QUOTA_EXCEEDED ? SEVERITY_WARNING : SEVERITY_INFO;
  const pri = h.facility * 8 + severity;
  const head = `<${pri}>1 ${new Date(wallMs).toISOString()} ${headerField(h.hostname, 255)} ${headerField(h.appName, 48)} ${headerField(h.procId, 128)} ${MSG_ID[e.kind] ?? "-"}`;
  const params: Array<[string, string]> = [];
  const inside = formatIpv4(e.inAddr);
  const proto = flowProtocolName(e.proto);
  let text: string;
  if (e.kind === EV_QUOTA_EXCEEDED) {
    params.push(
      ["IATYP", "IPv4"],
      ["ISADDR", inside],
      ["PROTO", String(e.proto)],
      ["LIMIT", String(e.limit)],
    );
    text = `${WHAT[e.kind]} ${proto} ${inside} (${e.limit} ports)`;
  } else if (e.kind === EV_PORT_BLOCK_ADDED || e.kind === EV_PORT_BLOCK_DELETED) {
    const outside = formatIpv4(e.outAddr);
    params.push(
      ["IATYP", "IPv4"],
      ["ISADDR", inside],
      ["XATYP", "IPv4"],
      ["XSADDR", outside],
      ["PBSTART", String(e.inPort)],
      ["PBEND", String(e.outPort)],
      ["PROTO", String(e.proto)],
    );
    text = `${WHAT[e.kind]} ${proto} ${inside} -> ${outside}:${e.inPort}-${e.outPort}`;
  } else {
    const outside = formatIpv4(e.outAddr);
    params.push(
      ["IATYP", "IPv4"],
      ["ISADDR", inside],
      ["ISPORT", String(e.inPort)],
      ["XATYP", "IPv4"],
      ["XSADDR", outside],
      ["XSPORT", String(e.outPort)],
      ["PROTO", String(e.proto)],
    );
    text = `${WHAT[e.kind] ?? "event"} ${proto} ${inside}:${e.inPort} -> ${outside}:${e.outPort}`;
    if (h.destination && e.remAddr !== 0) {
      const remote = formatIpv4(e.remAddr);
      params.push(["XDADDR", remote], ["XDPORT", String(e.remPort)]);
      text += ` to ${remote}:${e.remPort}`;
    }
  }
  const sd = `[${SD_ID[e.kind] ?? "nevent"}${params.map(([k, v]) => ` ${k}="${sdValue(v)}"`).join("")}]`;
  // MSG is plain ASCII, so no BOM (RFC 5424 §6.4: MSG-ANY).
  return `${head} ${sd} ${text}`;
}

/** RFC 6587 §3.4.1 octet counting: "MSG-LEN SP SYSLOG-MSG", the length in bytes. */
export function octetCounted(msg: string): Buffer {
  const body = Buffer.from(msg, "utf8");
  return Buffer.concat([Buffer.from(`${body.length} `, "ascii"), body]);
}
