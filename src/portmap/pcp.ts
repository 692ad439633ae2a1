// PCP (RFC 6887) wire format for IPv4 and IPv6 clients: request parsing with the checks of §8.3 (in
// the order the RFC gives them, so each refusal carries the right result code) and response
// building. Pure: no sockets, no engine; pcp-answers.ts decides what to grant.

export const PCP_VERSION = 2;
export const PCP_PORT = 5351;
/** Unsolicited ANNOUNCE responses go to the all-hosts group on this port (§14.1.3). */
export const PCP_CLIENT_PORT = 5350;
/** §7: requests and responses are at most 1100 bytes. */
export const PCP_MAX_BYTES = 1100;
const HEADER = 24;
const MAP_PAYLOAD = 36;
const PEER_PAYLOAD = 56;

export const OPCODE_ANNOUNCE = 0;
export const OPCODE_MAP = 1;
export const OPCODE_PEER = 2;

/** Result codes (§7.4). */
export const PcpResult = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;

/** Error lifetimes (§7.4): how long a client should expect the same answer. */
const LONG_ERROR_SEC = 1800;
const SHORT_ERROR_SEC = 30;

/** The lifetime of an error response: short for what may pass soon (resources, quota), else long. */
export function pcpErrorLifetime(result: number): number {
  return result === PcpResult.NO_RESOURCES ||
    result === PcpResult.USER_EX_QUOTA ||
    result === PcpResult.NETWORK_FAILURE
    ? SHORT_ERROR_SEC
    : LONG_ERROR_SEC;
}

export const PCP_RESULT_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(PcpResult).map(([k, v]) => [v, k]),
);

/** Option codes (§7.3, §13). 0-127 must be understood; 128-255 may be ignored. */
export const OPTION_THIRD_PARTY = 1;
export const OPTION_PREFER_FAILURE = 2;
export const OPTION_FILTER = 3;

/** A FILTER option (§13.3). `A`: the address as the family's parser reads it (a number for IPv4). */
export interface PcpFilter<A = number> {
  /** Remote peer address, with prefixLength counted as on the wire (IPv4: in the mapped form). */
  remoteAddr: A;
  prefixLength: number;
  remotePort: number;
}

export interface PcpMapRequest<A = number> {
  kind: "map";
  lifetime: number;
  clientAddr: A;
  nonce: Uint8Array;
  /** IANA protocol number (6 TCP, 17 UDP, 0 all). */
  protocol: number;
  internalPort: number;
  suggestedExternalPort: number;
  /** The family's "no preference" (0, or ::) when there is none. */
  suggestedExternalAddr: A;
  thirdParty?: A;
  preferFailure: boolean;
  filters: PcpFilter<A>[];
}

export type PcpRequest<A = number> =
  | { kind: "announce"; lifetime: number; clientAddr: A }
  | PcpMapRequest<A>
  /** Answered with `result`; the response copies what it can of the request (§7.2). */
  | { kind: "error"; result: number; opcode: number; why: string }
  /** Not answered (§8.3: too short or too long, or a response). */
  | { kind: "ignore"; why: string };

/**
 * How one address family reads the 128-bit address fields: `read` gives undefined for an address
 * of the other family; `none` is "no preference" (§5: the all-zeros address).
 */
interface AddressFamily<A> {
  read(b: Uint8Array, at: number): A | undefined;
  same(a: A, b: A): boolean;
  none: A;
  isNone(a: A): boolean;
  /** The shortest FILTER prefix other than 0 (§13.3: an IPv4 prefix counts the 96 mapped bits). */
  minFilterPrefix: number;
}

const IPV4_FAMILY: AddressFamily<number> = {
  read: (b, at) => readMappedIpv4(b, at),
  same: (a, b) => a === b,
  none: 0,
  isNone: (a) => a === 0,
  minFilterPrefix: 96,
};

const IPV6_FAMILY: AddressFamily<Uint8Array> = {
  read: (b, at) => {
    // An IPv4-mapped address is the other family's; :: is "no preference" here as well.
    const v4 = readMappedIpv4(b, at);
    if (v4 !== undefined && v4 !== 0) return undefined;
    return b.slice(at, at + 16);
  },
  same: (a, b) => a.length === b.length && a.every((x, i) => x === b[i]),
  none: new Uint8Array(16),
  isNone: (a) => a.every((x) => x === 0),
  minFilterPrefix: 1,
};

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) at `at`, or undefined for other IPv6 addresses. */
export function readMappedIpv4(b: Uint8Array, at: number): number | undefined {
  for (let i = 0; i < 10; i++) if (b[at + i] !== 0) return undefined;
  if (b[at + 10] !== 0xff || b[at + 11] !== 0xff) {
    // §5: the all-zeros address (::) stands for "no preference" in suggested-address fields.
    for (let i = 10; i < 16; i++) if (b[at + i] !== 0) return undefined;
    return 0;
  }
  return ((b[at + 12] << 24) | (b[at + 13] << 16) | (b[at + 14] << 8) | b[at + 15]) >>> 0;
}

/** An address field: IPv4 in the mapped form (0: all zeros), or 16 IPv6 bytes. */
function writeAddress(b: Uint8Array, at: number, addr: number | Uint8Array): void {
  if (typeof addr !== "number") b.set(addr.subarray(0, 16), at);
  else if (addr === 0) b.fill(0, at, at + 16);
  else writeMappedIpv4(b, at, addr);
}

export function writeMappedIpv4(b: Uint8Array, at: number, addr: number): void {
  b.fill(0, at, at + 10);
  b[at + 10] = 0xff;
  b[at + 11] = 0xff;
  b[at + 12] = addr >>> 24;
  b[at + 13] = (addr >>> 16) & 255;
  b[at + 14] = (addr >>> 8) & 255;
  b[at + 15] = addr & 255;
}

/**
 * Parses a datagram sent to the PCP port from IPv4 source `srcAddr`. Version 0 (NAT-PMP) is
 * the caller's to route elsewhere; here it is an unsupported version like any other.
 */
export function parsePcpRequest(b: Uint8Array, srcAddr: number): PcpRequest {
  return parseWith(IPV4_FAMILY, b, srcAddr);
}

/** Parses a datagram sent to the PCP port over IPv6 from `srcAddr` (16 bytes). */
export function parsePcpRequest6(b: Uint8Array, srcAddr: Uint8Array): PcpRequest<Uint8Array> {
  return parseWith(IPV6_FAMILY, b, srcAddr);
}

function parseWith<A>(fam: AddressFamily<A>, b: Uint8Array, srcAddr: A): PcpRequest<A> {
  // §8.3: shorter than 2 octets or longer than 1100: silently dropped.
  if (b.length < 2 || b.length > PCP_MAX_BYTES) return { kind: "ignore", why: "bad length" };
  if ((b[1] & 0x80) !== 0) return { kind: "ignore", why: "a response, not a request" };
  const opcode = b[1] & 0x7f;
  if (b[0] !== PCP_VERSION)
    return { kind: "error", result: PcpResult.UNSUPP_VERSION, opcode, why: `version ${b[0]}` };
  if (b.length < HEADER || b.length % 4 !== 0)
    return { kind: "error", result: PcpResult.MALFORMED_REQUEST, opcode, why: `length ${b.length}` };
  if (opcode !== OPCODE_ANNOUNCE && opcode !== OPCODE_MAP)
    return { kind: "error", result: PcpResult.UNSUPP_OPCODE, opcode, why: `opcode ${opcode}` };
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const lifetime = dv.getUint32(4);
  const clientAddr = fam.read(b, 8);
  // §8.3: the client's own idea of its address must be the packet's source; a NAT between the
  // client and us (or a spoofed field) makes a mapping for the wrong address.
  if (clientAddr === undefined || !fam.same(clientAddr, srcAddr))
    return {
      kind: "error",
      result: PcpResult.ADDRESS_MISMATCH,
      opcode,
      why: "client address is not the source",
    };
  const payload = opcode === OPCODE_MAP ? MAP_PAYLOAD : 0;
  if (b.length < HEADER + payload)
    return { kind: "error", result: PcpResult.MALFORMED_REQUEST, opcode, why: "payload too short" };

  let thirdParty: A | undefined;
  let preferFailure = false;
  const filters: PcpFilter<A>[] = [];
  for (let at = HEADER + payload; at < b.length; ) {
    if (at + 4 > b.length)
      return { kind: "error", result: PcpResult.MALFORMED_OPTION, opcode, why: "truncated option header" };
    const code = b[at];
    const len = dv.getUint16(at + 2);
    const data = at + 4;
    const next = data + ((len + 3) & ~3);
    if (next > b.length)
      return { kind: "error", result: PcpResult.MALFORMED_OPTION, opcode, why: `option ${code} overruns` };
    const forMap = opcode === OPCODE_MAP;
    if (code === OPTION_THIRD_PARTY && forMap) {
      if (len !== 16 || thirdParty !== undefined)
        return { kind: "error", result: PcpResult.MALFORMED_OPTION, opcode, why: "THIRD_PARTY" };
      const a = fam.read(b, data);
      if (a === undefined || fam.isNone(a))
        return { kind: "error", result: PcpResult.MALFORMED_OPTION, opcode, why: "THIRD_PARTY address" };
      thirdParty = a;
    } else if (code === OPTION_PREFER_FAILURE && forMap) {
      if (len !== 0 || preferFailure)
        return { kind: "error", result: PcpResult.MALFORMED_OPTION, opcode, why: "PREFER_FAILURE" };
      preferFailure = true;
    } else if (code === OPTION_FILTER && forMap) {
      if (len !== 20)
        return { kind: "error", result: PcpResult.MALFORMED_OPTION, opcode, why: "FILTER length" };
      const prefixLength = b[data + 1];
      const remoteAddr = fam.read(b, data + 4);
      // §13.3: an IPv4 filter prefix counts the 96 bits of the mapped form.
      if (
        remoteAddr === undefined ||
        prefixLength > 128 ||
        (prefixLength !== 0 && prefixLength < fam.minFilterPrefix)
      )
        return { kind: "error", result: PcpResult.MALFORMED_OPTION, opcode, why: "FILTER prefix" };
      filters.push({ remoteAddr, prefixLength, remotePort: dv.getUint16(data + 2) });
    } else if (code < 128) {
      // Mandatory-to-process options we do not know (or not valid for this opcode): §7.3.
      return { kind: "error", result: PcpResult.UNSUPP_OPTION, opcode, why: `option ${code}` };
    }
    at = next;
  }

  if (opcode === OPCODE_ANNOUNCE) return { kind: "announce", lifetime, clientAddr };
  const m = HEADER;
  const suggestedExternalAddr = fam.read(b, m + 20);
  return {
    kind: "map",
    lifetime,
    clientAddr,
    nonce: b.slice(m, m + 12),
    protocol: b[m + 12],
    internalPort: dv.getUint16(m + 16),
    suggestedExternalPort: dv.getUint16(m + 18),
    // A suggestion of the other family is no preference we can honour.
    suggestedExternalAddr: suggestedExternalAddr ?? fam.none,
    ...(thirdParty !== undefined ? { thirdParty } : {}),
    preferFailure,
    filters,
  };
}

export interface PcpResponseFields {
  result: number;
  lifetime: number;
  epochSec: number;
}

/** Writes the common response header over the first 24 bytes of `b` (§7.2). */
function writeHeader(b: Uint8Array, opcode: number, f: PcpResponseFields): void {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  b[0] = PCP_VERSION;
  b[1] = 0x80 | (opcode & 0x7f);
  b[2] = 0;
  b[3] = f.result;
  dv.setUint32(4, f.lifetime >>> 0);
  dv.setUint32(8, f.epochSec >>> 0);
  b.fill(0, 12, 24);
}

/**
 * An error response: §7.2 and §8.3 have the server copy the request (up to 1100 bytes, a
 * multiple of 4) behind a response header, so the client can match it (the nonce of a MAP).
 * For UNSUPP_VERSION the copy is irrelevant: the header alone, with the version we speak.
 */
export function pcpErrorResponse(request: Uint8Array, opcode: number, f: PcpResponseFields): Uint8Array {
  let len = f.result === PcpResult.UNSUPP_VERSION ? HEADER : Math.min(request.length, PCP_MAX_BYTES) & ~3;
  if (len < HEADER) len = HEADER;
  const b = new Uint8Array(len);
  b.set(request.subarray(0, Math.min(len, request.length)));
  writeHeader(b, opcode, f);
  return b;
}

export function pcpAnnounceResponse(f: PcpResponseFields): Uint8Array {
  const b = new Uint8Array(HEADER);
  writeHeader(b, OPCODE_ANNOUNCE, f);
  return b;
}

export interface PcpMapResponseFields extends PcpResponseFields {
  nonce: Uint8Array;
  protocol: number;
  internalPort: number;
  externalPort: number;
  /** IPv4 (written in the mapped form, 0: none) or IPv6 (16 bytes). */
  externalAddr: number | Uint8Array;
  /** Options granted, echoed back (§11.3: FILTER and PREFER_FAILURE as processed). */
  options?: Uint8Array;
}

/** A MAP response (§11.2): header, then nonce, protocol, internal and assigned external endpoint. */
export function pcpMapResponse(f: PcpMapResponseFields): Uint8Array {
  const opts = f.options ?? new Uint8Array(0);
  const b = new Uint8Array(HEADER + MAP_PAYLOAD + opts.length);
  writeHeader(b, OPCODE_MAP, f);
  const dv = new DataView(b.buffer);
  b.set(f.nonce.subarray(0, 12), HEADER);
  b[HEADER + 12] = f.protocol;
  dv.setUint16(HEADER + 16, f.internalPort);
  dv.setUint16(HEADER + 18, f.externalPort);
  writeAddress(b, HEADER + 20, f.externalAddr);
  b.set(opts, HEADER + MAP_PAYLOAD);
  return b;
}

/** Builds a request (for tests and the scripted client). */
export function buildPcpRequest(r: {
  version?: number;
  opcode: number;
  lifetime: number;
  /** IPv4 (a number) or IPv6 (16 bytes). */
  clientAddr: number | Uint8Array;
  nonce?: Uint8Array;
  protocol?: number;
  internalPort?: number;
  suggestedExternalPort?: number;
  suggestedExternalAddr?: number | Uint8Array;
  options?: Array<{ code: number; data: Uint8Array }>;
}): Uint8Array {
  const payload = r.opcode === OPCODE_MAP ? MAP_PAYLOAD : r.opcode === OPCODE_PEER ? PEER_PAYLOAD : 0;
  const opts = r.options ?? [];
  const optBytes = opts.reduce((n, o) => n + 4 + ((o.data.length + 3) & ~3), 0);
  const b = new Uint8Array(HEADER + payload + optBytes);
  const dv = new DataView(b.buffer);
  b[0] = r.version ?? PCP_VERSION;
  b[1] = r.opcode & 0x7f;
  dv.setUint32(4, r.lifetime >>> 0);
  writeAddress(b, 8, r.clientAddr);
  if (r.opcode === OPCODE_MAP) {
    if (r.nonce) b.set(r.nonce.subarray(0, 12), HEADER);
    b[HEADER + 12] = r.protocol ?? 6;
    dv.setUint16(HEADER + 16, r.internalPort ?? 0);
    dv.setUint16(HEADER + 18, r.suggestedExternalPort ?? 0);
    if (r.suggestedExternalAddr) writeAddress(b, HEADER + 20, r.suggestedExternalAddr);
  }
  let at = HEADER + payload;
  for (const o of opts) {
    b[at] = o.code;
    dv.setUint16(at + 2, o.data.length);
    b.set(o.data, at + 4);
    at += 4 + ((o.data.length + 3) & ~3);
  }
  return b;
}

export interface PcpResponse {
  version: number;
  opcode: number;
  result: number;
  lifetime: number;
  epochSec: number;
  nonce?: Uint8Array;
  protocol?: number;
  internalPort?: number;
  externalPort?: number;
  externalAddr?: number;
  /** The external address field as it is (16 bytes), for IPv6 answers. */
  externalAddr6?: Uint8Array;
}

/** Parses a response (for tests and the scripted client); undefined if it is not one. */
export function parsePcpResponse(b: Uint8Array): PcpResponse | undefined {
  if (b.length < HEADER || (b[1] & 0x80) === 0) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const r: PcpResponse = {
    version: b[0],
    opcode: b[1] & 0x7f,
    result: b[3],
    lifetime: dv.getUint32(4),
    epochSec: dv.getUint32(8),
  };
  if (r.opcode === OPCODE_MAP && b.length >= HEADER + MAP_PAYLOAD) {
    r.nonce = b.slice(HEADER, HEADER + 12);
    r.protocol = b[HEADER + 12];
    r.internalPort = dv.getUint16(HEADER + 16);
    r.externalPort = dv.getUint16(HEADER + 18);
    r.externalAddr = readMappedIpv4(b, HEADER + 20) ?? 0;
    r.externalAddr6 = b.slice(HEADER + 20, HEADER + 36);
  }
  return r;
}

/**
 * The options of a MAP response: those the server processed are echoed (§11.3), PREFER_FAILURE
 * (§13.2, no data) and the FILTER (§13.3: prefix length, remote port, remote address).
 */
export function echoedMapOptions(preferFailure: boolean, filter: PcpFilter | undefined): Uint8Array {
  const opts: number[] = [];
  if (preferFailure) opts.push(OPTION_PREFER_FAILURE, 0, 0, 0);
  if (filter) {
    const o = new Uint8Array(24);
    o[0] = OPTION_FILTER;
    o[3] = 20;
    o[5] = filter.prefixLength;
    o[6] = filter.remotePort >>> 8;
    o[7] = filter.remotePort & 255;
    if (filter.remoteAddr !== 0) writeMappedIpv4(o, 8, filter.remoteAddr);
    opts.push(...o);
  }
  return Uint8Array.from(opts);
}
