// The one descriptor every application-level gateway exports. An ALG watches flows to its server
// ports (configurable); for TCP it sees the stream as complete lines (the registry reassembles
// lines split across segments and corrects sequence numbers when a rewrite changes a length), for
// UDP whole datagrams; it may return a rewritten line and announce expectations.

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
  /**
   * TCP message ALGs: sets the 16-bit field at `at` of the segment being looked at (its TCP
   * checksum kept right); same length, so no sequence number changes.
   */
  rewrite16(at: number, value: number): void;
  /**
   * PPTP (RFC 2637): a GRE flow for a call of this flow's inside host, keyed by call ids (see
   * src/nat/generic-flow.ts). Returns the flow and the host's call id as seen outside, or null
   * when refused (counted).
   */
  greCall(inCallId: number, remCallId: number): { flow: number; outCallId: number } | null;
  /** The server answered GRE call flow `flow` with its call id. */
  greCallAnswered(flow: number, remCallId: number): void;
  /** Whether `flow` is still the GRE call flow of this host with outside call id `outCallId`. */
  isGreCall(flow: number, outCallId: number): boolean;
  /** What the ALG keeps about this flow between packets (undefined at first). */
  state: unknown;
}

export type Transport = "tcp" | "udp";

/**
 * The shared ALG events (the engine's alg_* counters, nat/counters.ts C_ALG_*) an ALG may report;
 * each one it lists in its descriptor is also counted for it alone, as alg_<name>_<event>.
 */
export type AlgEvent =
  | "rewrites"
  | "expectations"
  | "expectations_refused"
  | "segments_resized"
  | "lines_held"
  | "malformed"
  | "oversized"
  | "foreign_address"
  | "segments_cut"
  | "replayed"
  | "errors";

/**
 * Which related flows an ALG may expect (as netfilter's nf_conntrack_expect_policy): the
 * registry refuses any other expectation the ALG asks for and counts it as an ALG error.
 */
export interface ExpectationPolicy {
  /** The transport of the flows it expects (GRE: PPTP's calls, which are flows of their own). */
  readonly transport: Transport | "gre";
  /** From whom: the control flow's remote only, or any address (IRC DCC: the peer is another user). */
  readonly from: "remote" | "any";
  /** Outstanding at once per control flow; absent: [alg] max_expectations_per_flow. */
  readonly maxPerFlow?: number;
}

/**
 * Everything masq knows of one ALG: its config section `[alg.<name>]` (enabled, ports), the
 * ports it watches by default, what it may expect and which counters it reports are derived from
 * this one object. The list of them is src/alg/algs.ts.
 */
interface AlgDescriptorBase<N extends string = string> {
  /** Config key (`[alg.<name>]`), counter prefix, listings' origin of its expectations. */
  readonly name: N;
  /** Server ports watched when the config names none. */
  readonly defaultPorts: readonly number[];
  /** On unless the config switches it off; false for an ALG one must ask for. */
  readonly enabledByDefault?: boolean;
  readonly expectation: ExpectationPolicy;
  /** The shared events it reports, each also counted per ALG (alg_<name>_<event>). */
  readonly counters: readonly AlgEvent[];
}

export interface TcpLineAlg<N extends string = string> extends AlgDescriptorBase<N> {
  readonly transport: "tcp";
  /**
   * Whether a line starting with buf[s, e) (complete, or the start of one still arriving) could be
   * one this ALG rewrites in this direction. Partial lines that could are held until complete.
   */
  interesting(buf: Uint8Array, s: number, e: number, outbound: boolean): boolean;
  /** A complete line (terminator included, latin1); the replacement or null for unchanged. */
  line(ctx: AlgContext, line: string, outbound: boolean): string | null;
}

/**
 * A TCP ALG of a binary protocol (PPTP): it sees each segment's payload as it comes, may rewrite
 * 16-bit fields in place (ctx.rewrite16) and never changes a length. Messages must lie whole in
 * one segment (as netfilter's PPTP helper requires).
 */
export interface TcpMessageAlg<N extends string = string> extends AlgDescriptorBase<N> {
  readonly transport: "tcp";
  readonly framing: "messages";
  /** The payload buf[s, e) of a segment, in the direction `outbound`. */
  segment(ctx: AlgContext, buf: Uint8Array, s: number, e: number, outbound: boolean): void;
}

export interface UdpAlg<N extends string = string> extends AlgDescriptorBase<N> {
  readonly transport: "udp";
  /** A datagram's payload buf[s, e): may announce expectations (no rewriting of UDP here). */
  datagram(ctx: AlgContext, buf: Uint8Array, s: number, e: number, outbound: boolean): void;
}

/** One ALG's descriptor: a TCP line rewriter, a TCP message rewriter or a UDP datagram watcher. */
export type Alg<N extends string = string> = TcpLineAlg<N> | TcpMessageAlg<N> | UdpAlg<N>;

/**
 * The events of a TCP line ALG that rewrites what it parses and expects what the lines announce:
 * its own, and those of the registry's stream handling (held, resized, cut, replayed segments).
 */
export const TCP_REWRITER_EVENTS: readonly AlgEvent[] = [
  "rewrites",
  "expectations",
  "expectations_refused",
  "malformed",
  "errors",
  "segments_resized",
  "lines_held",
  "oversized",
  "segments_cut",
  "replayed",
];

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
