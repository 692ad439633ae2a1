// The one small interface every application-level gateway implements. An ALG watches flows to
// its server ports (configurable); for TCP it sees the stream as complete lines (the registry
// reassembles lines split across segments and corrects sequence numbers when a rewrite changes a
// length), for UDP whole datagrams; it may return a rewritten line and announce expectations.

/** What an ALG may know and do about the flow whose payload it is looking at. */
export interface AlgContext {
  /** The inside host's address and port, the outside address and port it has, the remote's. */
  readonly inAddr: number;
  readonly inPort: number;
  readonly outAddr: number;
  readonly outPort: number;
  readonly remAddr: number;
  readonly remPort: number;
  /**
   * Expects one related flow from `remote` (0: any address) to inside port `inPort` of the flow's
   * inside host: a pinned mapping that admits it whatever the filtering mode, lapses after the
   * configured timeout and is counted against the per-flow and total limits. `outPort`: the
   * outside port wanted (0: any). Returns the outside endpoint, or null when refused (counted).
   */
  expect(
    proto: "tcp" | "udp",
    inPort: number,
    remote: number,
    outPort?: number,
  ): { outAddr: number; outPort: number } | null;
  /** The inside port of this flow's expectation on outside port `outPort` (-1: none). */
  expectedInPort(proto: "tcp" | "udp", outPort: number): number;
  /** The outside port of this flow's expectation for inside port `inPort` (-1: none). */
  expectedOutPort(proto: "tcp" | "udp", inPort: number): number;
  /** Counts an event (counters.ts C_ALG_* slot). */
  count(slot: number): void;
}

export interface TcpLineAlg {
  readonly name: string;
  readonly kind: "tcp";
  /**
   * Whether a line starting with buf[s, e) (complete, or the start of one still arriving) could be
   * one this ALG rewrites in this direction. Partial lines that could are held until complete.
   */
  interesting(buf: Uint8Array, s: number, e: number, outbound: boolean): boolean;
  /** A complete line (terminator included, latin1); the replacement or null for unchanged. */
  line(ctx: AlgContext, line: string, outbound: boolean): string | null;
}

export interface UdpAlg {
  readonly name: string;
  readonly kind: "udp";
  /** A datagram's payload buf[s, e): may announce expectations (no rewriting of UDP here). */
  datagram(ctx: AlgContext, buf: Uint8Array, s: number, e: number, outbound: boolean): void;
}

export type Alg = TcpLineAlg | UdpAlg;

/** Case-insensitive: buf[s, e) starts with `prefix` (lower-case ASCII), or is a start of it. */
export function startsWithCI(buf: Uint8Array, s: number, e: number, prefix: string): boolean {
  const n = Math.min(prefix.length, e - s);
  for (let i = 0; i < n; i++) {
    let c = buf[s + i];
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== prefix.charCodeAt(i)) return false;
  }
  return true;
}

/** A decimal 0..255 octet without a sign or spaces (leading zeros allowed, as FTP clients send). */
export function octet(s: string): number {
  if (!/^\d{1,3}$/.test(s)) return -1;
  const n = Number(s);
  return n <= 255 ? n : -1;
}

/** A decimal port 1..65535. */
export function portNumber(s: string): number {
  if (!/^\d{1,5}$/.test(s)) return -1;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : -1;
}

/** A dotted-quad IPv4 address, or -1. */
export function parseDotted(s: string): number {
  const parts = s.split(".");
  if (parts.length !== 4) return -1;
  let a = 0;
  for (const p of parts) {
    const o = octet(p);
    if (o < 0) return -1;
    a = a * 256 + o;
  }
  return a;
}
