// Pinned ports outside their owner's slice, with several workers (issue 13). A pin (a forward,
// a NAT-PMP/PCP or UPnP mapping) lives on the worker of its inside host, but its outside port is
// whatever the administrator or the client asked for, so it can lie in another worker's slice, or
// in none (a forwarded port beyond interface mode's range). For each such port the main thread
// keeps one entry: the steering's override table sends the port to the pin's worker, and the
// slice's worker keeps the port from its own hosts (src/nat/foreign-ports.ts). The override table
// is keyed by port alone, so a port is held for one worker on every public address: a second
// worker's pin of the same port, on another address, is refused.
//
// An entry lives while a pin holds the port, and after its last pin while the worker's mapping
// still has flows (a connection through a removed forward finishes); `sweep` finds pins that
// lapsed in their worker (a lease's end) and mappings that went.

import type { PortRange } from "../nat/config.ts";
import { overrideKey, portOwner } from "../nat/port-slices.ts";
import { tcpOrUdp } from "../packet/ipv4.ts";

type Proto = "tcp" | "udp";

/** The override table's key of `port` of `proto`. */
function keyOf(proto: Proto, port: number): number {
  return overrideKey(tcpOrUdp(proto), port);
}

/** What the bookkeeping asks of the workers (sharded-engine.ts gives it the shard calls). */
export interface SliceOps {
  readonly workers: number;
  readonly ports: { readonly tcp: PortRange; readonly udp: PortRange };
  /** The slice's worker keeps `port` from its hosts; false when one of them uses it. */
  reserve(worker: number, proto: Proto, port: number): boolean;
  release(worker: number, proto: Proto, port: number): void;
  /** Whether a mapping of `worker` still holds `port`. */
  holds(worker: number, proto: Proto, port: number): boolean;
  /** Every worker (and the steering) sends `port` to `worker`; undefined: to its slice again. */
  setOwner(proto: Proto, port: number, worker: number | undefined): void;
}

interface Entry {
  proto: Proto;
  port: number;
  /** The worker of the pins (and of the override). */
  holder: number;
  /** The worker whose slice holds the port and keeps it reserved; -1: none (beyond the range). */
  slice: number;
  pins: number;
}

export class CrossSlicePins {
  private readonly entries = new Map<number, Entry>();
  /** Pin id → the entry's key, for the pins that hold one. */
  private readonly byPin = new Map<number, number>();

  constructor(private readonly ops: SliceOps) {}

  /** Ports held outside their slice now (for tests and listings). */
  get size(): number {
    return this.entries.size;
  }

  /** The worker whose slice holds `port`, or -1 when no range has it. */
  sliceOf(proto: Proto, port: number): number {
    return portOwner(this.ops.ports[proto], true, port, this.ops.workers);
  }

  /**
   * Before worker `holder` pins outside `port`: readies the override and the reservation when
   * the port is not of its slice. A problem (the port is another worker's) is returned as text.
   */
  claim(proto: Proto, port: number, holder: number): string | undefined {
    const slice = this.sliceOf(proto, port);
    const key = keyOf(proto, port);
    const e = this.entries.get(key);
    if (!e && slice === holder) return undefined;
    if (e) {
      if (e.holder !== holder)
        return `port ${port}/${proto} is in use: held for a host of worker ${e.holder} (one worker per port, on every address)`;
      e.pins++;
      return undefined;
    }
    if (slice >= 0 && !this.ops.reserve(slice, proto, port)) return `port ${port}/${proto} is in use`;
    this.ops.setOwner(proto, port, holder);
    this.entries.set(key, { proto, port, holder, slice, pins: 1 });
    return undefined;
  }

  /** The pin (global id) that `claim` was for was made: its removal gives the port back. */
  bind(pinId: number, proto: Proto, port: number): void {
    const key = keyOf(proto, port);
    if (this.entries.has(key)) this.byPin.set(pinId, key);
  }

  /** A claim whose pin was not made, or a pin that went: one holder fewer. */
  unclaim(proto: Proto, port: number): void {
    this.dropOne(keyOf(proto, port));
  }

  /** Pin `pinId` went (unpinned): its port's entry loses it. */
  unpinned(pinId: number): void {
    const key = this.byPin.get(pinId);
    if (key === undefined) return;
    this.byPin.delete(pinId);
    this.dropOne(key);
  }

  /** Pins that lapsed in their worker lose their entries; entries without pins or flows end. */
  sweep(alive: (pinId: number) => boolean): void {
    for (const id of [...this.byPin.keys()]) if (!alive(id)) this.unpinned(id);
    for (const [key, e] of [...this.entries]) if (e.pins === 0) this.endIfIdle(key, e);
  }

  private dropOne(key: number): void {
    const e = this.entries.get(key);
    if (!e || e.pins === 0) return;
    e.pins--;
    if (e.pins === 0) this.endIfIdle(key, e);
  }

  private endIfIdle(key: number, e: Entry): void {
    if (this.ops.holds(e.holder, e.proto, e.port)) return;
    this.entries.delete(key);
    this.ops.setOwner(e.proto, e.port, undefined);
    if (e.slice >= 0) this.ops.release(e.slice, e.proto, e.port);
  }
}
