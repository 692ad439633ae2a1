// What the engine needs of the application-level gateways (implemented in src/alg, which sits
// above the engine): pick an ALG for a new flow, see its packets, hear when it ends.

export interface AlgHook {
  /** The ALG (1..255) watching a new flow whose server port is `port`; 0 for none. */
  classify(proto: number, port: number): number;
  /**
   * A translated packet of flow f: may rewrite it in place (FORWARD) or build a replacement in
   * the engine's replyBuf and set its outLen (REPLY). Never throws.
   */
  packet(
    f: number,
    alg: number,
    b: Uint8Array,
    off: number,
    hl: number,
    total: number,
    outbound: boolean,
    l4Partial: boolean,
  ): number;
  flowEnded(f: number): void;
  /**
   * The sender's sequence number for `seq`, the number its receiver saw on a segment of flow f
   * (quoted in an ICMP error); `seq` itself when the ALG changed nothing in that direction.
   */
  quotedSeq(f: number, segmentOutbound: boolean, seq: number): number;
  /** Counters of the gateways' own, by name, listed with the engine's. */
  namedCounters(): Record<string, number>;
}
