// What the engine shows of itself to the control plane: read-only, allocated freely (not hot path).
// The views are built in views.ts.
import { IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";

export type Protocol = "tcp" | "udp" | "icmp";

export function protoName(p: number): Protocol {
  return p === IPPROTO_TCP ? "tcp" : p === IPPROTO_UDP ? "udp" : "icmp";
}

/**
 * The IP protocols a flow may have, by the names listings use (IANA protocol numbers); a flow of
 * another protocol (address-only, src/nat/generic-flow.ts) is shown by its number.
 */
export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = {
  icmp: 1,
  ipip: 4,
  tcp: 6,
  udp: 17,
  dccp: 33,
  ipv6: 41,
  gre: 47,
  esp: 50,
  sctp: 132,
  udplite: 136,
};

const PROTOCOL_NAMES: string[] = [];
for (const [name, n] of Object.entries(PROTOCOL_NUMBERS)) PROTOCOL_NAMES[n] = name;

/** A flow's protocol as listings show it: "tcp", "gre" … or the number ("103"). */
export function flowProtocolName(p: number): string {
  return PROTOCOL_NAMES[p] ?? String(p);
}

export interface FlowView {
  /** "tcp", "udp", "icmp", or another protocol by name ("gre", "esp" …) or number. */
  protocol: string;
  /**
   * "192.168.0.2:40000" style endpoints (ICMP: the echo identifier stands for the port; other
   * protocols have none, 0, but a PPTP call's GRE flow shows its call ids).
   */
  inside: { addr: string; port: number };
  outside: { addr: string; port: number };
  remote: { addr: string; port: number };
  /** TCP: syn-sent, syn-received, established, fin-wait, closing, time-wait, closed; others: active. */
  state: string;
  /** How the flow began: outbound (an inside host), inbound (admitted by filtering), hairpin. */
  origin: string;
  idleSec: number;
  /** Seconds until it expires if no packet comes. */
  expiresInSec: number;
  packetsOut: number;
  packetsIn: number;
  bytesOut: number;
  bytesIn: number;
}

/**
 * One flow's fields as numbers (addresses as 32-bit unsigned ints), filled in place by
 * NatEngine.readFlow: a listing of 200 k flows reads them all through one of these and formats
 * them straight into its output, instead of making an object graph per flow.
 */
export class FlowFields {
  protocol = "udp";
  inAddr = 0;
  inPort = 0;
  outAddr = 0;
  outPort = 0;
  remAddr = 0;
  remPort = 0;
  state = "";
  origin = "";
  idleSec = 0;
  expiresInSec = 0;
  packetsOut = 0;
  packetsIn = 0;
  bytesOut = 0;
  bytesIn = 0;
}

export interface EngineStats {
  /** Counter name -> value; drop counters are named "drop_<reason>". */
  counters: Record<string, number>;
  flows: number;
  /** Of the flows, inbound TCP connections that have not completed their handshake. */
  halfOpen: number;
  mappings: number;
  hosts: number;
  heldFragments: number;
  /** Bytes the held fragments take (in the buffer's 512-byte chunks). */
  heldFragmentBytes: number;
  capacity: { flows: number; mappings: number; hosts: number };
  bytesPerFlow: number;
}

/** A pinned mapping: a forward, a NAT-PMP/PCP mapping or an ALG expectation. */
export interface PinView {
  id: number;
  protocol: Protocol;
  inside: { addr: string; port: number };
  outside: { addr: string; port: number };
  /** "*" when any remote may connect. */
  remote: string;
  origin: string;
  note: string;
  /** null: never expires. */
  expiresInSec: number | null;
  /** Flows currently using the mapping. */
  flows: number;
}
