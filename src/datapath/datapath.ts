// The packet loop: batches from each TUN go through the engine and back out, in place, to the
// device they came from. One batch per wake-up and device; forwarded packets are written back as
// one batch; replies and released fragments follow. Each device is one arrival side (inside or
// outside), which the engine is told with every packet. Nothing here allocates per packet.
import { performance } from "node:perf_hooks";
import type { BatchIo } from "../io/batch-io.ts";
import type { Ip6Filter } from "../ipv6fw/filter.ts";
import {
  DROP,
  FORWARD,
  HAND_OVER,
  type NatEngine,
  REPLY,
  SIDE_BY_ADDRESS,
  SIDE_HAIRPIN,
  SIDE_INSIDE,
  SIDE_OUTSIDE,
} from "../nat/engine.ts";
import { clearVirtioNetHdr, needsChecksum } from "../packet/virtio-net.ts";
import { coalesceUdpWrites } from "./udp-coalesce.ts";

const MAX_BATCH = 1024;
/** The first byte of a packet posted to another worker: what it is. */
const HANDOFF_FRAGMENT = 0; // an outside fragment, IP only (fragment-handoff.ts)
const HANDOFF_HAIRPIN = 1; // the inbound half of a hairpin, with the device's header (HAND_OVER)

export interface DatapathStats {
  batches: number;
  packets: number;
  written: number;
  writeFailures: number;
  largestBatch: number;
  /** Datagrams written as part of another's UDP super-packet (udp-coalesce.ts), not on their own. */
  coalesced: number;
}

export function emptyDatapathStats(): DatapathStats {
  return { batches: 0, packets: 0, written: 0, writeFailures: 0, largestBatch: 0, coalesced: 0 };
}

/** A device and the side its packets arrive from (SIDE_INSIDE, SIDE_OUTSIDE or SIDE_BY_ADDRESS). */
export interface DatapathPort {
  readonly io: BatchIo;
  readonly side: number;
}

export class Datapath {
  private readonly engine: NatEngine;
  private readonly ports: readonly DatapathPort[];
  /** Where packets the engine makes for outside hosts go (the only device when there is one). */
  private readonly outside: DatapathPort;
  private readonly clock: () => number;
  private readonly ipMeta = new Uint32Array(MAX_BATCH * 2);
  private readonly outMeta = new Uint32Array(MAX_BATCH * 2);
  /** A reply or released fragment, behind a zeroed virtio-net header when the device wants one. */
  private readonly scratch = new Uint8Array(65536 + 64);
  private timer: NodeJS.Timeout | undefined;
  private catchUpQueued = false;
  /** IPv6 simple security (RFC 6092); undefined: IPv6 packets go to the engine, which drops them. */
  private readonly ip6: Ip6Filter | undefined;
  readonly stats: DatapathStats = emptyDatapathStats();
  /** Several workers: posts a packet to another worker (fragment-handoff.ts); unset: one worker. */
  private handoffTo: ((worker: number, packet: Uint8Array) => void) | undefined;

  /** `io`: one device or several, each with its side; a bare device has no side (the source decides). */
  constructor(
    engine: NatEngine,
    io: BatchIo | readonly DatapathPort[],
    clock: () => number = () => performance.now(),
    ip6?: Ip6Filter,
  ) {
    this.ip6 = ip6;
    this.engine = engine;
    this.ports = Array.isArray(io) ? io : [{ io: io as BatchIo, side: SIDE_BY_ADDRESS }];
    this.outside = this.ports.find((p) => p.side === SIDE_OUTSIDE) ?? this.ports[0];
    this.clock = clock;
  }

  start(): void {
    for (const port of this.ports) port.io.start((buf, meta, count) => this.onBatch(port, buf, meta, count));
    // Flows expire even when no packet comes to move the engine's clock; what the engine sends on
    // its own clock (RFC 5382 REQ-4 answers, due 6 s after their SYN) goes out then too.
    this.timer = setInterval(() => this.tickNow(), 1000);
    this.timer.unref();
  }

  /** Moves the engine's clock (expiring a budget of flows), sends what is due, continues expiry. */
  private tickNow(): void {
    this.engine.tick(this.clock());
    this.sendAnswers();
    this.catchUpLater();
  }

  /**
   * Expiry stopped at its budget (a burst of flows timed out together): the rest goes one budget
   * at a time between batches (setImmediate runs after the loop's I/O), never in one stall.
   */
  private catchUpLater(): void {
    if (!this.engine.timersBehind || this.catchUpQueued || this.timer === undefined) return;
    this.catchUpQueued = true;
    setImmediate(() => {
      this.catchUpQueued = false;
      if (this.timer !== undefined) this.tickNow();
    });
  }

  /** Several workers: where handed-off fragments (after a batch) and hairpin halves go, each a copy. */
  setHandoff(post: (worker: number, packet: Uint8Array) => void): void {
    this.handoffTo = post;
  }

  /**
   * A packet another worker posted (its first byte says what it is): a fragment of a datagram
   * whose flow is this worker's, translated as if read from this worker's outside queue; or the
   * inbound half of a hairpin to this worker's mapping, written to the inside device (where the
   * hairpinned packet came from) with the header it came with.
   */
  receiveHandoff(msg: Uint8Array): void {
    const engine = this.engine;
    const now = this.clock();
    if (msg[0] === HANDOFF_HAIRPIN) {
      const port = this.ports.find((p) => p.side === SIDE_INSIDE) ?? this.ports[0];
      const h = port.io.headerBytes;
      const partial = h > 0 && needsChecksum(msg, 1);
      const v = engine.process(msg, 1 + h, msg.length - 1 - h, now, partial, SIDE_HAIRPIN);
      if (v === FORWARD) {
        if (port.io.write(msg, 1, engine.outLen + h)) this.stats.written++;
        else this.stats.writeFailures++;
      } else if (v === REPLY) this.send(port.io, engine.replyBuf, engine.outLen);
    } else {
      const port = this.outside;
      const v = engine.process(msg, 1, msg.length - 1, now, false, port.side);
      if (v === FORWARD) this.send(port.io, msg.subarray(1), engine.outLen);
      else if (v === REPLY) this.send(port.io, engine.replyBuf, engine.outLen);
      for (let p = engine.takePending(); p !== undefined; p = engine.takePending())
        this.send(port.io, p, p.length);
    }
    this.postHandoffs();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  onBatch(port: DatapathPort, buf: Uint8Array, meta: Uint32Array, count: number): void {
    const engine = this.engine;
    const { io, side } = port;
    const h = io.headerBytes;
    const now = this.clock();
    const st = this.stats;
    st.batches++;
    st.packets += count;
    if (count > st.largestBatch) st.largestBatch = count;
    for (let start = 0; start < count; start += MAX_BATCH) {
      const n = Math.min(MAX_BATCH, count - start);
      const ipMeta = this.ipMeta;
      for (let k = 0; k < n; k++) {
        ipMeta[2 * k] = meta[2 * (start + k)] + h;
        ipMeta[2 * k + 1] = meta[2 * (start + k) + 1] - h;
      }
      engine.prefetch(buf, ipMeta, n);
      let out = 0;
      for (let k = 0; k < n; k++) {
        const off = meta[2 * (start + k)];
        // The header is written back unchanged (unless flush merges the datagram into a UDP
        // super-packet): the engine's rewrites keep every offset in it (checksum start, header
        // length) valid, and the kernel segments a GSO super-packet (TSO, USO) as it describes,
        // finishing each segment's checksum from the partial one.
        const ipLen = ipMeta[2 * k + 1];
        if (this.ip6 !== undefined && buf[off + h] >>> 4 === 6) {
          // IPv6 is filtered, never translated: written back unchanged (header and all) or dropped.
          if (this.ip6.process(buf, off + h, ipLen, now, side) === FORWARD) {
            this.outMeta[2 * out] = off;
            this.outMeta[2 * out + 1] = ipLen + h;
            out++;
          }
          continue;
        }
        const partial = h > 0 && needsChecksum(buf, off);
        const v = engine.process(buf, off + h, ipLen, now, partial, side);
        if (v === FORWARD) {
          this.outMeta[2 * out] = off;
          this.outMeta[2 * out + 1] = engine.outLen + h;
          out++;
        } else if (v === REPLY) {
          // What came before goes first: a reply may be a rebuilt segment of a stream (an ALG
          // rewrite that changed its length), which must not overtake the segments before it.
          this.flush(io, buf, out);
          out = 0;
          this.send(io, engine.replyBuf, engine.outLen);
        } else if (v === HAND_OVER) {
          // The inbound half of a hairpin is another worker's (slow path: a copy).
          this.post(engine.handoffWorker, HANDOFF_HAIRPIN, buf, off, engine.outLen + h);
        } else if (v !== DROP) {
          // HELD: the engine keeps it until its first fragment comes; HANDED: in its outbox.
        }
      }
      this.flush(io, buf, out);
    }
    // Fragments released by this batch: they arrived on this device, held until their first.
    for (let p = engine.takePending(); p !== undefined; p = engine.takePending()) this.send(io, p, p.length);
    this.sendAnswers();
    this.postHandoffs();
    this.catchUpLater();
  }

  /** Posts what the engine handed to other workers during the batch (slow path: a copy each). */
  private postHandoffs(): void {
    const box = this.engine.handoffOutbox;
    if (box === null || box.count === 0) return;
    for (let i = 0; i < box.count; i++)
      this.post(box.meta[3 * i], HANDOFF_FRAGMENT, box.buf, box.meta[3 * i + 1], box.meta[3 * i + 2]);
    box.clear();
  }

  /** A copy of buf[start, start + len) behind its kind byte, to `worker`. */
  private post(worker: number, kind: number, buf: Uint8Array, start: number, len: number): void {
    if (this.handoffTo === undefined) return;
    const msg = new Uint8Array(len + 1);
    msg[0] = kind;
    msg.set(buf.subarray(start, start + len), 1);
    this.handoffTo(worker, msg);
  }

  /**
   * Writes packets the control plane had the engine make for inside hosts (the resets of a
   * public address change) to the inside device; returns how many were written.
   */
  sendInside(packets: readonly Uint8Array[]): number {
    const port = this.ports.find((p) => p.side === SIDE_INSIDE) ?? this.ports[0];
    const before = this.stats.written;
    for (const p of packets) this.send(port.io, p, p.length);
    return this.stats.written - before;
  }

  /** RFC 5382 REQ-4 answers that came due: to outside hosts, so out of the outside device. */
  private sendAnswers(): void {
    const io = this.outside.io;
    for (let p = this.engine.takeAnswer(); p !== undefined; p = this.engine.takeAnswer())
      this.send(io, p, p.length);
  }

  /**
   * Writes the `count` forwarded packets gathered in outMeta as one batch, runs of one UDP flow's
   * datagrams merged into super-packets where the device takes them.
   */
  private flush(io: BatchIo, buf: Uint8Array, count: number): void {
    if (count === 0) return;
    if (count > 1 && io.coalescesUdp === true)
      this.stats.coalesced += coalesceUdpWrites(buf, this.outMeta, count, io.headerBytes);
    const w = io.writeBatch(buf, this.outMeta, count);
    this.stats.written += w;
    this.stats.writeFailures += count - w;
  }

  /** Writes one packet the engine built (or released), with a plain header when one is needed. */
  private send(io: BatchIo, pkt: Uint8Array, len: number): void {
    const h = io.headerBytes;
    let ok: boolean;
    if (h === 0) ok = io.write(pkt, 0, len);
    else {
      clearVirtioNetHdr(this.scratch, 0);
      this.scratch.set(pkt.subarray(0, len), h);
      ok = io.write(this.scratch, 0, len + h);
    }
    if (ok) this.stats.written++;
    else this.stats.writeFailures++;
  }
}
