// Pins keep a mapping alive without flows and admit inbound connections to it: port forwards,
// NAT-PMP/PCP mappings and the expectations of application-level gateways (the related
// flows a command announced). They are few and change rarely, so they live in plain JS
// structures; the packet path only asks `isPinned(m)` (a typed-array read) and, when a new
// inbound flow needs admitting, `admits(m, remote)`.

export interface Pin {
  id: number;
  /** Mapping index in the engine's mapping table. */
  mapping: number;
  /** Inbound admitted only from this remote address (0 = any). */
  remoteAddr: number;
  /** Engine-clock second when the pin lapses (0 = never). */
  expiresAtSec: number;
  /** Removed once it has admitted one inbound flow (an expectation). */
  oneShot: boolean;
  /** Who made it, for listings: "forward", "natpmp", "pcp" or the name of an ALG */
  origin: string;
  /** Free-form note shown in listings (e.g. the ALG's control connection it belongs to). */
  note: string;
}

export class PinRegistry {
  private readonly byId = new Map<number, Pin>();
  private readonly byMapping = new Map<number, Pin[]>();
  /** Pins per mapping, readable on the packet path without touching the maps. */
  readonly count: Uint8Array;
  private nextId = 1;
  /** Earliest expiry of any pin (0 = none), so the once-a-second check is a comparison. */
  nextExpirySec = 0;

  constructor(mappingCapacity: number) {
    this.count = new Uint8Array(mappingCapacity);
  }

  get size(): number {
    return this.byId.size;
  }

  isPinned(m: number): boolean {
    return this.count[m] !== 0;
  }

  /** Adds a pin; undefined when the mapping already has 255 pins. */
  add(p: Omit<Pin, "id">): Pin | undefined {
    if (this.count[p.mapping] === 255) return undefined;
    const pin: Pin = { ...p, id: this.nextId++ };
    this.byId.set(pin.id, pin);
    const list = this.byMapping.get(p.mapping);
    if (list) list.push(pin);
    else this.byMapping.set(p.mapping, [pin]);
    this.count[p.mapping]++;
    if (p.expiresAtSec !== 0 && (this.nextExpirySec === 0 || p.expiresAtSec < this.nextExpirySec))
      this.nextExpirySec = p.expiresAtSec;
    return pin;
  }

  /** Moves a pin's deadline in place (its id stays). */
  renew(id: number, expiresAtSec: number): boolean {
    const pin = this.byId.get(id);
    if (!pin) return false;
    pin.expiresAtSec = expiresAtSec;
    if (expiresAtSec !== 0 && (this.nextExpirySec === 0 || expiresAtSec < this.nextExpirySec))
      this.nextExpirySec = expiresAtSec;
    return true;
  }

  get(id: number): Pin | undefined {
    return this.byId.get(id);
  }

  remove(id: number): Pin | undefined {
    const pin = this.byId.get(id);
    if (!pin) return undefined;
    this.byId.delete(id);
    const list = this.byMapping.get(pin.mapping);
    if (list) {
      const i = list.indexOf(pin);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byMapping.delete(pin.mapping);
    }
    this.count[pin.mapping]--;
    return pin;
  }

  /** The pin that admits a new inbound flow from `remote` to mapping m, if any. */
  admitting(m: number, remote: number): Pin | undefined {
    const list = this.byMapping.get(m);
    if (!list) return undefined;
    for (const p of list) if (p.remoteAddr === 0 || p.remoteAddr === remote) return p;
    return undefined;
  }

  /** Pins whose time is up at `nowSec`; the caller removes them. */
  due(nowSec: number): Pin[] {
    if (this.nextExpirySec === 0 || nowSec < this.nextExpirySec) return [];
    const out: Pin[] = [];
    let next = 0;
    for (const p of this.byId.values()) {
      if (p.expiresAtSec === 0) continue;
      if (p.expiresAtSec <= nowSec) out.push(p);
      else if (next === 0 || p.expiresAtSec < next) next = p.expiresAtSec;
    }
    this.nextExpirySec = next;
    return out;
  }

  all(): Pin[] {
    return [...this.byId.values()];
  }

  /** Pins of mapping m (none when it has none). */
  of(m: number): readonly Pin[] {
    return this.byMapping.get(m) ?? [];
  }
}
