// The IPv6 firewall (`[ipv6] firewall`, RFC 6092) with several workers: each worker filters the
// IPv6 of its own hosts (the steering hashes an IPv6 packet by its inside host's address, the
// source from inside and the destination from outside, steering-model.ts), so each has its own
// Ip6Filter with a share of the table. The main thread's PCP server opens and closes pinholes
// through ShardedIp6, on the worker of the pinhole's address; the counters add up.
import type { Ip6Filter } from "../ipv6fw/filter.ts";
import type { ShardClient } from "./shard-channel.ts";
import { ipv6Queue } from "./steering-model.ts";

const OPS = {
  counters: "ip6Counters",
  open: "ip6OpenPinhole",
  close: "ip6ClosePinhole",
  closeAll: "ip6CloseAllPinholes",
} as const;

interface PinholeArgs {
  address: Uint8Array;
  proto: number;
  port: number;
  now: number;
  expiresMs?: number;
}

/** The worker's side: its filter's pinholes and counters, on the worker's clock. */
export function ip6ShardOps(filter: Ip6Filter, clock: () => number) {
  return {
    [OPS.counters]: () => filter.counters(clock()),
    [OPS.open]: (a: PinholeArgs) => filter.openPinhole(a.address, a.proto, a.port, a.now, a.expiresMs ?? 0),
    [OPS.close]: (a: PinholeArgs) => filter.closePinhole(a.address, a.proto, a.port, a.now),
    [OPS.closeAll]: () => filter.closeAllPinholes(),
  };
}

/** The worker that filters IPv6 address `a` (16 bytes): the steering's own rule for it. */
export function ipv6Worker(a: Uint8Array, workers: number): number {
  return ipv6Queue(a, 0, a.length, 0, workers);
}

/** The main thread's view of the workers' filters, in the shape the PCP server and stats use. */
export class ShardedIp6 implements Pick<Ip6Filter, "openPinhole" | "closePinhole" | "closeAllPinholes"> {
  constructor(private readonly client: ShardClient) {}

  openPinhole(address: Uint8Array, proto: number, port: number, now: number, expiresMs: number): boolean {
    const w = ipv6Worker(address, this.client.workers);
    return this.client.callSync<boolean>(w, OPS.open, { address, proto, port, now, expiresMs });
  }

  closePinhole(address: Uint8Array, proto: number, port: number, now: number): void {
    this.client.callSync(ipv6Worker(address, this.client.workers), OPS.close, { address, proto, port, now });
  }

  closeAllPinholes(): void {
    for (let w = 0; w < this.client.workers; w++) this.client.callSync(w, OPS.closeAll);
  }

  /** Every worker's counters added up (the capacity too: each worker has its share). */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let w = 0; w < this.client.workers; w++)
      for (const [k, v] of Object.entries(this.client.callSync<Record<string, number>>(w, OPS.counters)))
        out[k] = (out[k] ?? 0) + v;
    return out;
  }
}
