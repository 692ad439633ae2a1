// The port allocator against a plain model of its rules: preferred port if free; else, from a
// random starting word (the same xorshift draws), the first port of the preferred's class (RFC
// 4787 REQ-3: below 1024 or not, when keepClass) and parity (REQ-4) in word order, the lowest
// free bit of a word first; any parity on the second pass. The allocator finds that port with
// word masks instead of a scan bit by bit; warm() (the prefetch) must change nothing.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { NO_PORT, PortAllocator, UNPRIVILEGED_FIRST } from "../../../src/nat/port-allocator.ts";
import { assertProperty } from "../../helpers/property.ts";

class Model {
  private readonly used: Set<number>[];
  private rng: number;
  constructor(
    private readonly first: number,
    private readonly last: number,
    addresses: number,
    seed: number,
    private readonly keepClass: boolean,
  ) {
    this.used = Array.from({ length: addresses }, () => new Set<number>());
    this.rng = seed >>> 0 || 1;
  }

  private split(): number {
    return this.keepClass && this.first < UNPRIVILEGED_FIRST && this.last >= UNPRIVILEGED_FIRST ? 1024 : -1;
  }

  private inClass(port: number, preferred: number): boolean {
    const s = this.split();
    return s < 0 || port < s === preferred < s;
  }

  allocate(a: number, preferred: number, parity: boolean): number {
    const u = this.used[a];
    if (preferred >= this.first && preferred <= this.last && !u.has(preferred)) {
      u.add(preferred);
      return preferred;
    }
    const cls: number[] = [];
    for (let p = this.first; p <= this.last; p++) if (this.inClass(p, preferred)) cls.push(p);
    if (cls.every((p) => u.has(p))) return NO_PORT;
    // The class's words, from the random one on, wrapping; each word's ports in order.
    const words = [...new Set(cls.map((p) => (p - this.first) >>> 5))];
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    const start = this.rng % words.length;
    const order = [...words.slice(start), ...words.slice(0, start)];
    for (const pass of parity ? [0, 1] : [1]) {
      for (const w of order)
        for (const p of cls.filter((q) => (q - this.first) >>> 5 === w))
          if (!u.has(p) && (pass === 1 || (p & 1) === (preferred & 1))) {
            u.add(p);
            return p;
          }
    }
    return NO_PORT;
  }

  release(a: number, port: number): void {
    this.used[a].delete(port);
  }
}

const op = fc.record({
  kind: fc.constantFrom("allocate", "allocate", "allocate", "release", "warm"),
  addr: fc.nat(1),
  port: fc.oneof(fc.integer({ min: 0, max: 1100 }), fc.integer({ min: 0, max: 65535 })),
  parity: fc.boolean(),
});
const range = fc.oneof(
  fc.constant({ first: 1, last: 65535 }),
  fc.record({ first: fc.integer({ min: 900, max: 1030 }), span: fc.integer({ min: 0, max: 200 }) }),
  fc.record({ first: fc.integer({ min: 1, max: 64 }), span: fc.integer({ min: 0, max: 90 }) }),
);

describe("PortAllocator against its model", () => {
  it("gives the same ports, keeps the same counts, and warm() changes nothing", () => {
    assertProperty(
      fc.property(
        range,
        fc.boolean(),
        fc.integer({ min: 1 }),
        fc.array(op, { maxLength: 300 }),
        (r, keep, seed, ops) => {
          const first = r.first;
          const last = "last" in r ? r.last : Math.min(65535, r.first + r.span);
          const real = new PortAllocator({ first, last }, 2, seed, keep);
          const model = new Model(first, last, 2, seed, keep);
          for (const o of ops) {
            if (o.kind === "warm") real.warm(o.addr, o.port);
            else if (o.kind === "release") {
              real.release(o.addr, o.port);
              model.release(o.addr, o.port);
            } else
              assert.equal(real.allocate(o.addr, o.port, o.parity), model.allocate(o.addr, o.port, o.parity));
          }
        },
      ),
      150,
    );
  });
});
