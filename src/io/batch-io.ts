// The one small interface every packet source/sink implements (TUN, pcap replay, memory).

/**
 * A packet device that delivers and accepts packets in batches. `meta` holds (offset, length)
 * pairs into `buf`, one pair per packet.
 */
export interface BatchIo {
  /** With a virtio-net header (IFF_VNET_HDR), each packet starts with these bytes (0 without). */
  readonly headerBytes: number;
  /** Begins delivering batches; `onBatch` must finish with `buf` before it returns. */
  start(onBatch: (buf: Uint8Array, meta: Uint32Array, count: number) => void): void;
  /**
   * Takes UDP super-packets the datapath merges from datagrams of one flow (udp-coalesce.ts):
   * lengths in `meta` marked WRITE_APPEND join the packet before them. Unset: it does not.
   */
  readonly coalescesUdp?: boolean;
  /** Writes `count` packets described by `meta`; returns how many datagrams were written. */
  writeBatch(buf: Uint8Array, meta: Uint32Array, count: number): number;
  /** Writes one packet; false when the device refused it (counted by the caller). */
  write(buf: Uint8Array, off: number, len: number): boolean;
}
