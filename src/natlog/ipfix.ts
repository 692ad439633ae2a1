// NAT events as IPFIX (RFC 7011) with the NAT information elements of RFC 8158: a mapping is a
// NAT44 BIB entry (natEvent 8 create, 9 delete), a flow with `sessions` a NAT44 session (4, 5),
// a host refused at its quota natEvent 13 "quota exceeded" with natQuotaExceededEvent 3 "maximum
// entries per user" (as VPP's NAT exporter sends them), a port block (`[cgnat] port_block`)
// natEvent 16 allocation, 17 de-allocation with portRangeStart/End (RFC 8158 §4.5). Over UDP a collector may lose or never
// have seen the templates, so the exporter sends them again at intervals (RFC 7011 §8.4).
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

export const IPFIX_VERSION = 10;
const SET_TEMPLATE = 2;
const MESSAGE_HEADER = 16;
const SET_HEADER = 4;

/** RFC 8158 §4.1 natEvent values (IANA "NAT Event Type"). */
export const NAT_EVENT = {
  NAT44_SESSION_CREATE: 4,
  NAT44_SESSION_DELETE: 5,
  NAT44_BIB_CREATE: 8,
  NAT44_BIB_DELETE: 9,
  QUOTA_EXCEEDED: 13,
  PORT_BLOCK_ALLOCATION: 16,
  PORT_BLOCK_DEALLOCATION: 17,
} as const;
/** RFC 8158 §4.2 natQuotaExceededEvent: maximum entries per user. */
const QUOTA_MAX_ENTRIES_PER_USER = 3;

/** IANA IPFIX information element ids, with their lengths on the wire. */
export const IE = {
  protocolIdentifier: [4, 1],
  sourceTransportPort: [7, 2],
  sourceIPv4Address: [8, 4],
  destinationTransportPort: [11, 2],
  destinationIPv4Address: [12, 4],
  postNATSourceIPv4Address: [225, 4],
  postNAPTSourceTransportPort: [227, 2],
  natEvent: [230, 1],
  observationTimeMilliseconds: [323, 8],
  portRangeStart: [361, 2],
  portRangeEnd: [362, 2],
  portRangeStepSize: [363, 2],
  portRangeNumPorts: [364, 2],
  natQuotaExceededEvent: [466, 4],
  maxEntriesPerUser: [473, 4],
} as const;

type Field = (typeof IE)[keyof typeof IE];

/** Mappings and sessions without the remote (RFC 6888 REQ-12: the default). */
export const TEMPLATE_NAT44 = 256;
/** The same with the remote endpoint, when the configuration asks for it. */
export const TEMPLATE_NAT44_DESTINATION = 257;
export const TEMPLATE_QUOTA = 258;
/** A port block given to an inside host or freed (RFC 8158 §4.5, with the protocol). */
export const TEMPLATE_PORT_BLOCK = 259;

const NAT44_FIELDS: Field[] = [
  IE.observationTimeMilliseconds,
  IE.natEvent,
  IE.protocolIdentifier,
  IE.sourceIPv4Address,
  IE.sourceTransportPort,
  IE.postNATSourceIPv4Address,
  IE.postNAPTSourceTransportPort,
];
const TEMPLATES: Array<[number, Field[]]> = [
  [TEMPLATE_NAT44, NAT44_FIELDS],
  [TEMPLATE_NAT44_DESTINATION, [...NAT44_FIELDS, IE.destinationIPv4Address, IE.destinationTransportPort]],
  [
    TEMPLATE_QUOTA,
    [
      IE.observationTimeMilliseconds,
      IE.natEvent,
      IE.natQuotaExceededEvent,
      IE.maxEntriesPerUser,
      IE.sourceIPv4Address,
    ],
  ],
  [
    TEMPLATE_PORT_BLOCK,
    [
      IE.observationTimeMilliseconds,
      IE.natEvent,
      IE.protocolIdentifier,
      IE.sourceIPv4Address,
      IE.postNATSourceIPv4Address,
      IE.portRangeStart,
      IE.portRangeEnd,
      IE.portRangeStepSize,
      IE.portRangeNumPorts,
    ],
  ],
];

const recordBytes = (fields: Field[]) => fields.reduce((n, f) => n + f[1], 0);
const RECORD_BYTES = new Map(TEMPLATES.map(([id, fields]) => [id, recordBytes(fields)]));

/** The template set announcing every template (RFC 7011 §3.4.1). */
export function templateSet(): Buffer {
  const len = SET_HEADER + TEMPLATES.reduce((n, [, f]) => n + 4 + 4 * f.length, 0);
  const b = Buffer.alloc(len);
  b.writeUInt16BE(SET_TEMPLATE, 0);
  b.writeUInt16BE(len, 2);
  let at = SET_HEADER;
  for (const [id, fields] of TEMPLATES) {
    b.writeUInt16BE(id, at);
    b.writeUInt16BE(fields.length, at + 2);
    at += 4;
    for (const [ie, n] of fields) {
      b.writeUInt16BE(ie, at);
      b.writeUInt16BE(n, at + 2);
      at += 4;
    }
  }
  return b;
}

const NAT_EVENT_OF: Record<number, number> = {
  [EV_MAPPING_CREATED]: NAT_EVENT.NAT44_BIB_CREATE,
  [EV_MAPPING_DELETED]: NAT_EVENT.NAT44_BIB_DELETE,
  [EV_SESSION_CREATED]: NAT_EVENT.NAT44_SESSION_CREATE,
  [EV_SESSION_DELETED]: NAT_EVENT.NAT44_SESSION_DELETE,
  [EV_QUOTA_EXCEEDED]: NAT_EVENT.QUOTA_EXCEEDED,
  [EV_PORT_BLOCK_ADDED]: NAT_EVENT.PORT_BLOCK_ALLOCATION,
  [EV_PORT_BLOCK_DELETED]: NAT_EVENT.PORT_BLOCK_DEALLOCATION,
};

/** One data record: its template and bytes; undefined for an event IPFIX has no record for. */
export function dataRecord(
  e: NatEvent,
  wallMs: number,
  destination: boolean,
): { template: number; bytes: Buffer } | undefined {
  const natEvent = NAT_EVENT_OF[e.kind];
  if (natEvent === undefined) return undefined;
  if (e.kind === EV_QUOTA_EXCEEDED) {
    const b = Buffer.alloc(RECORD_BYTES.get(TEMPLATE_QUOTA)!);
    b.writeBigUInt64BE(BigInt(Math.round(wallMs)), 0);
    b.writeUInt8(natEvent, 8);
    b.writeUInt32BE(QUOTA_MAX_ENTRIES_PER_USER, 9);
    b.writeUInt32BE(e.limit, 13);
    b.writeUInt32BE(e.inAddr, 17);
    return { template: TEMPLATE_QUOTA, bytes: b };
  }
  if (e.kind === EV_PORT_BLOCK_ADDED || e.kind === EV_PORT_BLOCK_DELETED) {
    // A block's ports travel as inPort (first) and outPort (last), nat-events.ts.
    const b = Buffer.alloc(RECORD_BYTES.get(TEMPLATE_PORT_BLOCK)!);
    b.writeBigUInt64BE(BigInt(Math.round(wallMs)), 0);
    b.writeUInt8(natEvent, 8);
    b.writeUInt8(e.proto, 9);
    b.writeUInt32BE(e.inAddr, 10);
    b.writeUInt32BE(e.outAddr, 14);
    b.writeUInt16BE(e.inPort, 18);
    b.writeUInt16BE(e.outPort, 20);
    b.writeUInt16BE(1, 22);
    b.writeUInt16BE(e.outPort - e.inPort + 1, 24);
    return { template: TEMPLATE_PORT_BLOCK, bytes: b };
  }
  const template = destination ? TEMPLATE_NAT44_DESTINATION : TEMPLATE_NAT44;
  const b = Buffer.alloc(RECORD_BYTES.get(template)!);
  b.writeBigUInt64BE(BigInt(Math.round(wallMs)), 0);
  b.writeUInt8(natEvent, 8);
  b.writeUInt8(e.proto, 9);
  b.writeUInt32BE(e.inAddr, 10);
  b.writeUInt16BE(e.inPort, 14);
  b.writeUInt32BE(e.outAddr, 16);
  b.writeUInt16BE(e.outPort, 20);
  if (destination) {
    b.writeUInt32BE(e.remAddr, 22);
    b.writeUInt16BE(e.remPort, 26);
  }
  return { template, bytes: b };
}

/**
 * Packs data records into IPFIX messages of at most `maxBytes` (below the path MTU: RFC 7011
 * §10.3.3, no IP fragmentation), each with its header and, when asked, the templates first.
 */
export class IpfixPacker {
  /** RFC 7011 §3.1: data records sent before this message, modulo 2^32. */
  private sequence = 0;
  private readonly templates = templateSet();

  constructor(
    private readonly domainId: number,
    private readonly maxBytes = 1400,
  ) {}

  /** Messages for `records` (in order), exported at `exportSec` (seconds since the epoch). */
  pack(
    records: Array<{ template: number; bytes: Buffer }>,
    exportSec: number,
    withTemplates: boolean,
  ): Buffer[] {
    const messages: Buffer[] = [];
    let parts: Buffer[] = [];
    let size = MESSAGE_HEADER;
    let count = 0;
    let set: { template: number; records: Buffer[]; bytes: number } | undefined;
    const closeSet = () => {
      if (!set) return;
      const h = Buffer.alloc(SET_HEADER);
      h.writeUInt16BE(set.template, 0);
      h.writeUInt16BE(SET_HEADER + set.bytes, 2);
      parts.push(h, ...set.records);
      set = undefined;
    };
    const closeMessage = () => {
      closeSet();
      if (parts.length === 0) return;
      const h = Buffer.alloc(MESSAGE_HEADER);
      h.writeUInt16BE(IPFIX_VERSION, 0);
      h.writeUInt16BE(size, 2);
      h.writeUInt32BE(exportSec >>> 0, 4);
      h.writeUInt32BE(this.sequence >>> 0, 8);
      h.writeUInt32BE(this.domainId >>> 0, 12);
      messages.push(Buffer.concat([h, ...parts]));
      this.sequence = (this.sequence + count) >>> 0;
      parts = [];
      size = MESSAGE_HEADER;
      count = 0;
    };
    if (withTemplates) {
      parts.push(this.templates);
      size += this.templates.length;
    }
    for (const r of records) {
      const grows = r.bytes.length + (set?.template === r.template ? 0 : SET_HEADER);
      if (size + grows > this.maxBytes && (count > 0 || parts.length > 0)) closeMessage();
      if (set?.template !== r.template) {
        closeSet();
        set = { template: r.template, records: [], bytes: 0 };
        size += SET_HEADER;
      }
      set.records.push(r.bytes);
      set.bytes += r.bytes.length;
      size += r.bytes.length;
      count++;
    }
    closeMessage();
    return messages;
  }
}
