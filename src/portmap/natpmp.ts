// NAT-PMP (RFC 6886) wire format: requests parsed from, and responses built into, plain bytes.
// Pure: no sockets, no engine; natpmp-answers.ts decides what to answer.

/** The only NAT-PMP version (RFC 6886 §3). */
export const NATPMP_VERSION = 0;
/** Clients send to the gateway's port 5351; the gateway announces to 224.0.0.1:5350 (§3.2.1). */
export const NATPMP_PORT = 5351;
export const NATPMP_ANNOUNCE_PORT = 5350;

export const OP_EXTERNAL_ADDRESS = 0;
export const OP_MAP_UDP = 1;
export const OP_MAP_TCP = 2;
/** A response's opcode is the request's plus 128. */
export const OP_RESPONSE = 128;

/** Result codes (RFC 6886 §3.5). */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  /** "Not Authorized/Refused" (e.g. the box supports mapping but the user turned it off). */
  NOT_AUTHORIZED: 2,
  /** E.g. the NAT box itself has not obtained a DHCP lease. */
  NETWORK_FAILURE: 3,
  /** The NAT box cannot create any more mappings at this time. */
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;

/** Recommended lifetime of a mapping (RFC 6886 §3.3). */
export const NATPMP_RECOMMENDED_LIFETIME = 7200;

export type NatPmpRequest =
  | { kind: "external-address" }
  | {
      kind: "map";
      proto: "udp" | "tcp";
      internalPort: number;
      suggestedExternalPort: number;
      lifetime: number;
    }
  /** Answered with an error carrying `opcode` + 128 and `result`. */
  | { kind: "error"; opcode: number; result: number }
  /** Not to be answered at all (a response, or too short to be a request). */
  | { kind: "ignore"; why: string };

/** Parses a datagram sent to the NAT-PMP port (version 0 already checked or not). */
export function parseNatPmpRequest(b: Uint8Array): NatPmpRequest {
  if (b.length < 2) return { kind: "ignore", why: "shorter than 2 bytes" };
  const version = b[0];
  const op = b[1];
  // A response (ours echoed back, or another gateway's announcement) is never answered.
  if (op >= OP_RESPONSE) return { kind: "ignore", why: "a response, not a request" };
  if (version !== NATPMP_VERSION)
    return { kind: "error", opcode: op, result: NatPmpResult.UNSUPPORTED_VERSION };
  if (op === OP_EXTERNAL_ADDRESS) return { kind: "external-address" };
  if (op !== OP_MAP_UDP && op !== OP_MAP_TCP)
    return { kind: "error", opcode: op, result: NatPmpResult.UNSUPPORTED_OPCODE };
  // §3.3: a mapping request is 12 bytes; a shorter one cannot be answered meaningfully.
  if (b.length < 12) return { kind: "ignore", why: "mapping request shorter than 12 bytes" };
  const dv = view(b);
  return {
    kind: "map",
    proto: op === OP_MAP_UDP ? "udp" : "tcp",
    internalPort: dv.getUint16(4),
    suggestedExternalPort: dv.getUint16(6),
    lifetime: dv.getUint32(8),
  };
}

/** Response to an external address request (opcode 128, 12 bytes; §3.2). */
export function externalAddressResponse(result: number, epochSec: number, addr: number): Uint8Array {
  const b = new Uint8Array(12);
  const dv = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = OP_RESPONSE + OP_EXTERNAL_ADDRESS;
  dv.setUint16(2, result);
  dv.setUint32(4, epochSec >>> 0);
  dv.setUint32(8, result === NatPmpResult.SUCCESS ? addr >>> 0 : 0);
  return b;
}

/** Response to a mapping request (opcode 129/130, 16 bytes; §3.3). */
export function mapResponse(
  proto: "udp" | "tcp",
  result: number,
  epochSec: number,
  internalPort: number,
  externalPort: number,
  lifetime: number,
): Uint8Array {
  const b = new Uint8Array(16);
  const dv = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = OP_RESPONSE + (proto === "udp" ? OP_MAP_UDP : OP_MAP_TCP);
  dv.setUint16(2, result);
  dv.setUint32(4, epochSec >>> 0);
  dv.setUint16(8, internalPort);
  dv.setUint16(10, externalPort);
  dv.setUint32(12, lifetime >>> 0);
  return b;
}

/**
 * An error response: the 8-byte header (version, opcode + 128, result, epoch). §3.5: for an
 * unsupported version or opcode the server answers with only the header, opcode + 128.
 */
export function errorResponse(opcode: number, result: number, epochSec: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = (OP_RESPONSE + (opcode & 0x7f)) & 0xff;
  dv.setUint16(2, result);
  dv.setUint32(4, epochSec >>> 0);
  return b;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
