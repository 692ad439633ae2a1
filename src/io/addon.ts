// The native addon (native/tun.cc, built by `npm ci` into build/Release/masq_tun.node): the TUN
// device and huge-page memory for the flow tables. Loaded on first use, from src/ or dist/ alike.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TunCounters } from "./tun.ts";

export interface NativeTun {
  readonly name: string;
  readonly offloads: number;
  start(
    buf: Uint8Array,
    meta: Uint32Array,
    maxPacket: number,
    budget: number,
    onBatch: (n: number) => void,
  ): void;
  stop(): void;
  write(buf: Uint8Array, off: number, len: number): boolean;
  writeBatch(buf: Uint8Array, meta: Uint32Array, count: number): number;
  stats(): TunCounters;
  close(): void;
  /** TUNSETPERSIST: the device outlives the fd (and the process) while on. */
  setPersist(on: boolean): void;
  /** The device's queue-selection program (a socket filter's fd; -1: none). */
  attachSteering(progFd: number): void;
  /** Batches through an io_uring of `entries` from now on: "", or why not (the syscalls stay). */
  useUring(entries: number): string;
}

/** A NETLINK_ROUTE socket bound to multicast groups (native/netlink.cc). */
export interface NativeRouteSocket {
  /** A request to the kernel (a dump); false when it could not be queued. */
  send(buf: Uint8Array): boolean;
  close(): void;
}

export interface NativeAddon {
  /**
   * `onMessage` gets each datagram the kernel sends, or null and the errno of a failed read
   * (ENOBUFS: events were lost).
   */
  RouteSocket: new (
    groups: number,
    onMessage: (buf: Uint8Array | null, errno: number) => void,
  ) => NativeRouteSocket;
  RTMGRP_LINK: number;
  RTMGRP_IPV4_IFADDR: number;
  /** `multiQueue`: one more queue of the device (IFF_MULTI_QUEUE), numbered in opening order. */
  Tun: new (
    name: string,
    vnetHdr: boolean,
    offloads: number[],
    multiQueue?: boolean,
  ) => NativeTun;
  /** An array map of `entries` u32 values by u32 key (the steering program's override table). */
  bpfArrayMap(entries: number): number;
  bpfMapSet(mapFd: number, key: number, value: number): void;
  /** Loads a socket filter program (struct bpf_insn bytes); its fd. A refusal includes the verifier log. */
  bpfLoadSocketFilter(insns: Uint8Array): number;
  /** BPF_PROG_TEST_RUN: the program's return value for an IPv4 packet. */
  bpfTestRun(progFd: number, packet: Uint8Array): number;
  /** Closes an fd the addon gave out (a BPF map or program, a Unix datagram socket). */
  closeFd(fd: number): void;
  allocHugePages(bytes: number): ArrayBuffer;
  /** A UDP socket's fd, bound to address:port, receiving only what arrives on `device`. */
  udpSocketOnDevice(address: string, port: number, device: string): number;
  /** The CPUs the calling thread may run on (its affinity). */
  allowedCpus(): number[];
  /** Runs the calling thread (JavaScript's, the packet loop's) on `cpu` only. */
  pinThread(cpu: number): void;
  /** A non-blocking Unix datagram socket for the NAT log (native/unix-dgram.cc). */
  unixDgramSocket(): number;
  /** Sends buf to the socket at `path` without waiting: 0, or the errno. */
  unixDgramSend(fd: number, path: string, buf: Uint8Array): number;
  /**
   * The calling thread (the packet loop's) under SCHED_FIFO at `priority` (1-99; 0: back to
   * SCHED_OTHER): 0, or the errno of the refusal (EPERM without CAP_SYS_NICE).
   */
  setThreadRealtime(priority: number): number;
  /** The calling thread's SCHED_FIFO priority; 0 when it runs under another policy. */
  threadRealtimePriority(): number;
  /** Keep reading every started TUN for `us` after its last packet before sleeping (0: off). */
  setBusyPoll(us: number): void;
  TUN_F_CSUM: number;
  TUN_F_TSO4: number;
  TUN_F_TSO6: number;
  TUN_F_TSO_ECN: number;
  /** UDP segmentation offload (Linux 6.2); the kernel refuses them without it. */
  TUN_F_USO4: number;
  TUN_F_USO6: number;
  /** The virtio-net header as the C side has it (checked against src/packet/virtio-net.ts). */
  VIRTIO_NET_HDR_BYTES: number;
  VIRTIO_NET_HDR_F_NEEDS_CSUM: number;
  VIRTIO_NET_HDR_GSO_TCPV4: number;
  VIRTIO_NET_HDR_GSO_UDP_L4: number;
  /** writeBatch's mark of a datagram appended to the packet before it (src/datapath/udp-coalesce.ts). */
  WRITE_APPEND: number;
  WRITE_MAX_DATAGRAMS: number;
}

export const ADDON_PATH = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "build",
  "Release",
  "masq_tun.node",
);

let addon: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  } catch (err) {
    throw new Error(
      `the native addon is not built (${ADDON_PATH}: ${(err as Error).message}); run \`npm ci\` or \`npm run build\``,
    );
  }
  return addon;
}

/** The addon when it is built, else undefined (unit tests and benchmarks run without it too). */
export function tryLoadAddon(): NativeAddon | undefined {
  try {
    return loadAddon();
  } catch {
    return undefined;
  }
}
