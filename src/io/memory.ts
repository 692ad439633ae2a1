// An in-memory BatchIo for tests: packets queued by the test are delivered in batches laid out
// the way the TUN addon lays them out (one buffer, (offset, length) pairs), and packets written
// are kept as copies in order. No timers: delivery happens when the test calls deliver().
import {
  clearVirtioNetHdr,
  encodeVirtioNetHdr,
  VIRTIO_NET_HDR_BYTES,
  type VirtioNetHdr,
} from "../packet/virtio-net.ts";
import type { BatchIo } from "./batch-io.ts";

export interface MemoryIoOptions {
  /**
   * 0 (default) or VIRTIO_NET_HDR_BYTES: a virtio-net header before each packet, as a vnet TUN
   * puts there (zeroed unless the packet was queued with pushWithHeader).
   */
  headerBytes?: number;
  /** Most packets per batch (default 64). */
  batchSize?: number;
  /** Receive buffer bytes (default 1 MiB). */
  bufferBytes?: number;
}

export class MemoryIo implements BatchIo {
  readonly headerBytes: number;
  readonly batchSize: number;
  /** Every packet written, copied, header included, in the order written. */
  readonly written: Uint8Array[] = [];
  /** Batches delivered so far. */
  batches = 0;
  /** When false, writes are refused (a full device queue), so callers' failure counters can be tested. */
  accepting = true;
  private readonly buf: Uint8Array;
  private readonly meta: Uint32Array;
  private readonly queue: { packet: Uint8Array; header: VirtioNetHdr | undefined }[] = [];
  private onBatch: ((buf: Uint8Array, meta: Uint32Array, count: number) => void) | undefined;

  constructor(opts: MemoryIoOptions = {}) {
    this.headerBytes = opts.headerBytes ?? 0;
    if (this.headerBytes !== 0 && this.headerBytes !== VIRTIO_NET_HDR_BYTES)
      throw new Error(`MemoryIo: headerBytes must be 0 or ${VIRTIO_NET_HDR_BYTES}`);
    this.batchSize = opts.batchSize ?? 64;
    this.buf = new Uint8Array(opts.bufferBytes ?? 1 << 20);
    this.meta = new Uint32Array(this.batchSize * 2);
  }

  start(onBatch: (buf: Uint8Array, meta: Uint32Array, count: number) => void): void {
    this.onBatch = onBatch;
  }

  /**
   * Queues IP packets (without header: it is added here) for the next deliver(). A packet is
   * copied now, so the caller may reuse its array.
   */
  push(...packets: Uint8Array[]): this {
    for (const p of packets) this.queue.push({ packet: p.slice(), header: undefined });
    return this;
  }

  /** Queues one packet behind the virtio-net header `header` (a GSO super-packet, a partial checksum). */
  pushWithHeader(header: VirtioNetHdr, packet: Uint8Array): this {
    if (this.headerBytes === 0) throw new Error("MemoryIo: pushWithHeader on a device without headers");
    this.queue.push({ packet: packet.slice(), header: { ...header } });
    return this;
  }

  /** Delivers everything queued, in batches; returns the number of packets delivered. */
  deliver(): number {
    const cb = this.onBatch;
    if (cb === undefined) throw new Error("MemoryIo: deliver() before start()");
    const h = this.headerBytes;
    let delivered = 0;
    while (this.queue.length > 0) {
      let count = 0;
      let off = 0;
      while (count < this.batchSize && this.queue.length > 0) {
        const { packet: p, header } = this.queue[0];
        const len = h + p.length;
        if (off + len > this.buf.length) {
          if (count === 0) throw new Error(`MemoryIo: packet of ${p.length} bytes exceeds the buffer`);
          break;
        }
        this.queue.shift();
        if (header !== undefined) encodeVirtioNetHdr(header, this.buf, off);
        else if (h > 0) clearVirtioNetHdr(this.buf, off);
        this.buf.set(p, off + h);
        this.meta[2 * count] = off;
        this.meta[2 * count + 1] = len;
        off += len;
        count++;
      }
      this.batches++;
      cb(this.buf, this.meta, count);
      delivered += count;
    }
    return delivered;
  }

  writeBatch(buf: Uint8Array, meta: Uint32Array, count: number): number {
    if (!this.accepting) return 0;
    for (let k = 0; k < count; k++) this.write(buf, meta[2 * k], meta[2 * k + 1]);
    return count;
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.accepting) return false;
    this.written.push(buf.slice(off, off + len));
    return true;
  }

  /** The written packets without their virtio-net header. */
  writtenPackets(): Uint8Array[] {
    const h = this.headerBytes;
    return this.written.map((p) => p.subarray(h));
  }
}
