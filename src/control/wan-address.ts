// Which address interface mode translates to, followed from rtnetlink events (src/io/rtnetlink.ts):
// the outside interface's IPv4 addresses as the kernel reports them (its dumps, then its
// multicast events), and what that means for masq: an address appears, goes, comes back the
// same (a link flap, a PPP redial with the same lease: nothing to flush) or comes back another
// (everything on the old one is dead). Pure, fed with parsed events; wan-follow.ts owns the
// socket and reacts.
import type { RouteEvent } from "../io/rtnetlink.ts";

export type WanTransition =
  /** No address now (the engine drops what would leave; its state is kept). */
  | { kind: "lost"; address: number }
  /** The address masq used before it went is back: nothing to flush. */
  | { kind: "restored"; address: number }
  /** Another address than masq's (old 0: masq had none yet). */
  | { kind: "changed"; old: number; address: number };

interface Addr {
  address: number;
  secondary: boolean;
}

export class WanAddressState {
  private readonly name: string;
  /** Interface index by name, and each interface's IPv4 addresses, as the kernel reported them. */
  private readonly ifindex = new Map<string, number>();
  private readonly addresses = new Map<number, Addr[]>();
  /** The address the engine is on (0: none ever), and whether the interface has it now. */
  private inUse: number;
  private present: boolean;

  /** `initial`: the address masq started with (0: none). */
  constructor(outside: string, initial: number) {
    this.name = outside;
    this.inUse = initial >>> 0;
    this.present = this.inUse !== 0;
  }

  /** The address masq translates to now, 0 when the interface has none. */
  get current(): number {
    return this.present ? this.inUse : 0;
  }

  /** Forget what the kernel said (before a new dump, after events were lost). */
  reset(): void {
    this.ifindex.clear();
    this.addresses.clear();
  }

  /** Takes the events in; no decision until `decide`. */
  learn(events: readonly RouteEvent[]): void {
    for (const ev of events) {
      if (ev.kind === "link") {
        if (!ev.present) {
          this.addresses.delete(ev.ifindex);
          for (const [n, i] of this.ifindex) if (i === ev.ifindex) this.ifindex.delete(n);
          continue;
        }
        for (const [n, i] of this.ifindex) if (i === ev.ifindex && n !== ev.name) this.ifindex.delete(n);
        if (ev.name !== "") this.ifindex.set(ev.name, ev.ifindex);
      } else if (ev.kind === "address") {
        const list = (this.addresses.get(ev.ifindex) ?? []).filter((a) => a.address !== ev.address);
        if (ev.added) list.push({ address: ev.address >>> 0, secondary: ev.secondary });
        if (list.length > 0) this.addresses.set(ev.ifindex, list);
        else this.addresses.delete(ev.ifindex);
      }
    }
  }

  /**
   * What changed for masq since the last decision, if anything. The address in use stays while
   * the interface holds it (a new secondary changes nothing); else its primary address, else any.
   */
  decide(): WanTransition | undefined {
    const idx = this.ifindex.get(this.name);
    const list = idx === undefined ? [] : (this.addresses.get(idx) ?? []);
    let next = 0;
    if (this.inUse !== 0 && list.some((a) => a.address === this.inUse)) next = this.inUse;
    else next = (list.find((a) => !a.secondary) ?? list[0])?.address ?? 0;
    if (next === 0) {
      if (!this.present) return undefined;
      this.present = false;
      return { kind: "lost", address: this.inUse };
    }
    if (next === this.inUse) {
      if (this.present) return undefined;
      this.present = true;
      return { kind: "restored", address: next };
    }
    const old = this.inUse;
    this.inUse = next;
    this.present = true;
    return { kind: "changed", old, address: next };
  }
}
