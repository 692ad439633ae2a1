// The TUN device as a BatchIo, over the native addon (native/tun.cc). The addon reads batches
// into one buffer this class owns; the datapath rewrites them in place and writes them back.

import { VIRTIO_NET_HDR_BYTES } from "../packet/virtio-net.ts";
import { loadAddon, type NativeTun } from "./addon.ts";
import type { BatchIo } from "./batch-io.ts";

/** The largest packet a read can return: a 64 KB GSO packet and its header. */
const MAX_PACKET = 65535 + VIRTIO_NET_HDR_BYTES;

export interface TunCounters {
  rxPackets: number;
  rxBytes: number;
  rxWakeups: number;
  /** Wake-ups that stopped at the budget with packets possibly left (read on the next turn). */
  rxBudgetHits: number;
  rxErrors: number;
  /** Packets read while busy polling after a batch, without a wake-up (see busy_poll_us). */
  rxBusyPolled: number;
  /** GSO super-packets read: TCP (TSO) and UDP (USO), each up to 64 KB the kernel segments. */
  rxGsoTcp: number;
  rxGsoUdp: number;
  txPackets: number;
  txBytes: number;
  txQueueFull: number;
  txErrors: number;
  /** UDP super-packets written, each datagrams of one flow the datapath merged (all in txPackets). */
  txGsoUdp: number;
  /** io_uring_enter calls (each a round of reads or writes); 0 on the syscall path. */
  uringEnters: number;
  /** Rounds after which the ring failed and the device went back to the syscalls. */
  uringFailures: number;
  /** 1 while batches go through io_uring, 0 on the syscalls (summed: the queues on io_uring). */
  uring: number;
}

/**
 * How batches reach the kernel: "uring" (one io_uring_enter per round of reads or writes),
 * "syscalls" (one read() or write() per packet), or "auto" (io_uring when the ring can be set up).
 */
export type TunIoSetting = "auto" | "uring" | "syscalls";

/** Entries of a device's ring: the most reads or writes one io_uring_enter carries. */
const RING_ENTRIES = 256;

export interface TunOptions {
  /** Device name, e.g. "masq0"; created when absent (and removed when closed, unless persistent). */
  name: string;
  /**
   * IFF_VNET_HDR with checksum and segmentation offloads (TSO, and USO where the kernel has it):
   * one read or write carries up to 64 KB of a TCP stream or of UDP datagrams of one flow, the
   * route to throughput (as in wireguard-go).
   */
  vnetHdr?: boolean;
  /** Bytes of the receive buffer (default 4 MiB). */
  rxBytes?: number;
  /** Most packets read per wake-up, so the event loop stays responsive (default 256). */
  budget?: number;
  /**
   * One queue of a multi-queue device (IFF_MULTI_QUEUE): each open adds a queue, numbered in
   * opening order, and the kernel spreads what it routes into the device over them (by the
   * steering program, see attachSteering).
   */
  multiQueue?: boolean;
  /** How batches reach the kernel (default "syscalls"); without a ring, "uring" falls back as "auto" does. */
  io?: TunIoSetting;
}

export class TunDevice implements BatchIo {
  readonly headerBytes: number;
  readonly name: string;
  /** TUNSETOFFLOAD flags in force (0 without a vnet header). */
  readonly offloads: number;
  /** How this device's batches reach the kernel. */
  readonly io: "uring" | "syscalls";
  /** Why io_uring was asked for and not used; undefined otherwise. */
  readonly ioFallback: string | undefined;
  /**
   * The kernel takes UDP super-packets written to this device (USO is in force): the datapath
   * merges consecutive datagrams of a flow into them (src/datapath/udp-coalesce.ts).
   */
  readonly coalescesUdp: boolean;
  private readonly dev: NativeTun;
  private readonly buf: Uint8Array;
  private readonly meta: Uint32Array;
  private readonly budget: number;
  private closed = false;

  private constructor(
    dev: NativeTun,
    vnet: boolean,
    rxBytes: number,
    budget: number,
    io: { fallback?: string } | undefined,
  ) {
    this.dev = dev;
    this.name = dev.name;
    this.offloads = dev.offloads;
    this.coalescesUdp = vnet && (dev.offloads & loadAddon().TUN_F_USO4) !== 0;
    this.headerBytes = vnet ? VIRTIO_NET_HDR_BYTES : 0;
    this.io = io !== undefined && io.fallback === undefined ? "uring" : "syscalls";
    this.ioFallback = io?.fallback;
    // Through the ring, each read of a round gets a whole MAX_PACKET slot (its length is known only
    // afterwards), so a full budget takes budget slots; pages the kernel never writes stay unbacked.
    const slots = this.io === "uring" ? Math.min(budget, RING_ENTRIES) * (MAX_PACKET + 7) : 0;
    this.buf = new Uint8Array(Math.max(rxBytes, MAX_PACKET * 2, slots));
    this.budget = budget;
    this.meta = new Uint32Array(budget * 2);
  }

  static open(opts: TunOptions): TunDevice {
    const mod = loadAddon();
    const vnet = opts.vnetHdr ?? false;
    const tso = mod.TUN_F_CSUM | mod.TUN_F_TSO4 | mod.TUN_F_TSO6;
    // USO (Linux 6.2) takes both flags together; the engine needs nothing more for it than for
    // TSO: it rewrites addresses and ports, adjusts the partial checksum, and the header goes back
    // unchanged for the kernel to segment (test/unit/datapath/offload.test.ts).
    const uso = mod.TUN_F_USO4 | mod.TUN_F_USO6;
    // Offload sets to try, best first; the kernel refuses flags it does not know (TUNSETOFFLOAD
    // fails with EINVAL), and the next set is tried.
    const candidates = vnet
      ? [tso | mod.TUN_F_TSO_ECN | uso, tso | uso, tso | mod.TUN_F_TSO_ECN, tso, mod.TUN_F_CSUM]
      : [];
    const dev = new mod.Tun(opts.name, vnet, candidates, opts.multiQueue ?? false);
    const setting = opts.io ?? "syscalls";
    let io: { fallback?: string } | undefined;
    if (setting !== "syscalls") {
      const why = dev.useUring(RING_ENTRIES);
      io = why === "" ? {} : { fallback: why };
    }
    return new TunDevice(dev, vnet, opts.rxBytes ?? 4 * 1024 * 1024, opts.budget ?? 256, io);
  }

  start(onBatch: (buf: Uint8Array, meta: Uint32Array, count: number) => void): void {
    const { buf, meta } = this;
    this.dev.start(buf, meta, MAX_PACKET, this.budget, (count) => onBatch(buf, meta, count));
  }

  writeBatch(buf: Uint8Array, meta: Uint32Array, count: number): number {
    return this.dev.writeBatch(buf, meta, count);
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    return this.dev.write(buf, off, len);
  }

  /** Sets the device's queue-selection program (a loaded socket filter's fd; -1 removes it). */
  attachSteering(progFd: number): void {
    this.dev.attachSteering(progFd);
  }

  stats(): TunCounters {
    return this.dev.stats();
  }

  /**
   * Makes the device persistent (it and its routes outlive this process: `masq stop
   * --keep-state`), or ordinary again (it goes with the fd, the next run's way).
   */
  setPersist(on: boolean): void {
    this.dev.setPersist(on);
  }

  /** Stops reading and closes the fd; the kernel removes a non-persistent device with it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dev.close();
  }
}
