// Interface mode: the outside ports of NAT-PMP/PCP mappings beyond masq's own range. The public
// address is the gateway's own, and the kernel steers into masq only masq's range of TCP (UDP
// from the outside comes to masq whole) and, from the inside, only that range to the public
// address; any other port stays with the gateway. So a client that asks for its own port (a
// console's UDP 3074, `natpmpc -a 18080 …`) gets it only with rules of its own, like a forward
// outside the range (forwards.ts): added before the mapping is granted, recorded with the host
// setup (so exit and `masq cleanup` remove them exactly), and removed when its last mapping ends.
//
// A port the gateway itself uses (a listening socket, the kernel's ephemeral range: see
// gatewayPortUse), a forwarded one, 65535 (iproute2 cannot match it) and, unless
// allow_low_ports, ports below 1024 are never steered: the client then gets another port, as RFC
// 6886 §3.3 and RFC 6887 §11.3 allow.
import type { PortRange } from "../nat/config.ts";
import type { ForwardProto, Steering } from "./forwards.ts";
import type { PortmapLog } from "./service.ts";

/** iproute2 rejects 65535 in `dport` (host/footprint.ts MAX_RULE_PORT). */
const LAST_STEERABLE = 65534;

export interface MappedPortSteeringOptions {
  /** masq's own port range (already steered into it). */
  range: PortRange;
  /** Adds and removes one port's rules, recorded with the host setup. */
  steer: Steering;
  /** Why the gateway keeps the port for itself (its sockets, its ephemeral range, a forward), or undefined. */
  inUse: (proto: ForwardProto, port: number) => Promise<string | undefined>;
  /** Ports below 1024 may be steered (the config's allow_low_ports). */
  allowLowPorts: boolean;
  log: PortmapLog;
}

interface Entry {
  /** Requests waiting for or deciding on this port. */
  pending: number;
  /** Live mappings that have the port. */
  holders: number;
  /** Whether the rules are in place. */
  steered: boolean;
  ready: Promise<boolean>;
}

export class MappedPortSteering {
  private readonly entries = new Map<string, Entry>();
  /** Rule changes one after the other, so a removal and a new addition never cross. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: MappedPortSteeringOptions) {}

  /** Whether a mapping of `port` needs rules of its own (it lies beyond masq's range). */
  needs(port: number): boolean {
    return port !== 0 && (port < this.opts.range.first || port > this.opts.range.last);
  }

  /** Whether `port` is steered into masq now, so that a mapping may have it. */
  isSteered(proto: ForwardProto, port: number): boolean {
    return this.entries.get(`${proto}/${port}`)?.steered === true;
  }

  /**
   * Before a request for `port` is decided: steers the port when it may be (true once its rules
   * are in place). Each call is followed by one `settle` once the request is decided.
   */
  prepare(proto: ForwardProto, port: number): Promise<boolean> {
    const key = `${proto}/${port}`;
    let e = this.entries.get(key);
    if (!e) {
      const entry: Entry = { pending: 0, holders: 0, steered: false, ready: Promise.resolve(false) };
      entry.ready = this.install(proto, port).then((ok) => {
        entry.steered = ok;
        return ok;
      });
      this.entries.set(key, entry);
      e = entry;
    }
    e.pending++;
    return e.ready;
  }

  /**
   * `prepare` for a request that suggests `port`, when the port needs rules of its own; the
   * function it resolves to is that request's `settle` (a no-op when nothing was prepared).
   */
  async ready(proto: ForwardProto, port: number): Promise<() => void> {
    if (!this.needs(port)) return () => {};
    await this.prepare(proto, port);
    return () => this.settle(proto, port);
  }

  /** The request `prepare` was for is decided: rules no mapping holds go. */
  settle(proto: ForwardProto, port: number): void {
    const e = this.entries.get(`${proto}/${port}`);
    if (!e) return;
    e.pending--;
    this.drop(proto, port, e);
  }

  /** A mapping now has `port` (a no-op for a port that needs no rules). */
  hold(proto: ForwardProto, port: number): void {
    const e = this.entries.get(`${proto}/${port}`);
    if (e) e.holders++;
  }

  /** A mapping of `port` ended (deleted, lapsed); its rules go with the last one. */
  release(proto: ForwardProto, port: number): void {
    const e = this.entries.get(`${proto}/${port}`);
    if (!e || e.holders === 0) return;
    e.holders--;
    this.drop(proto, port, e);
  }

  /** The ports steered now, "tcp/18080" (for tests and listings). */
  steered(): string[] {
    return [...this.entries].filter(([, e]) => e.steered).map(([k]) => k);
  }

  /** Why a port is never steered, whatever the host says; undefined when it may be. */
  private refusal(port: number): string | undefined {
    if (port > LAST_STEERABLE) return `port ${port} cannot be matched by an ip rule`;
    if (port < 1024 && !this.opts.allowLowPorts) return `port ${port} is below 1024 (allow_low_ports is off)`;
    return undefined;
  }

  private async install(proto: ForwardProto, port: number): Promise<boolean> {
    const why = this.refusal(port) ?? (await this.opts.inUse(proto, port));
    if (why !== undefined) {
      this.opts.log.debug({ proto, port, why }, "port mapping: suggested port not steered");
      return false;
    }
    try {
      await this.serially(() => this.opts.steer.add(proto, port, port));
      return true;
    } catch (err) {
      this.opts.log.warn({ err, proto, port }, "port mapping: the suggested port could not be steered");
      return false;
    }
  }

  private drop(proto: ForwardProto, port: number, e: Entry): void {
    if (e.pending > 0 || e.holders > 0) return;
    const key = `${proto}/${port}`;
    if (this.entries.get(key) !== e) return;
    this.entries.delete(key);
    // Still being installed: the removal queues behind the addition.
    void e.ready.then((steered) => {
      if (!steered) return;
      this.serially(() => this.opts.steer.remove(proto, port, port)).catch((err: unknown) =>
        this.opts.log.warn({ err, proto, port }, "port mapping: a steering rule could not be removed"),
      );
    });
  }

  private serially<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
