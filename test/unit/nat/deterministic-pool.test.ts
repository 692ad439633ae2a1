// Deterministic NAT scaled out over several gateways (src/nat/deterministic-pool.ts): the pool's
// parts are disjoint and cover it; through any node every inside address has a range of that
// node's part, and the inverse names the node and the address for every port of it (RFC 7422's
// "who had A:P", answered for the whole pool).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { deterministicProblem } from "../../../src/nat/deterministic.ts";
import { DeterministicPool, nodePart } from "../../../src/nat/deterministic-pool.ts";
import { assertProperty } from "../../helpers/property.ts";

describe("the pool's parts", () => {
  it("property: disjoint, covering, in order, each of floor or ceil of A/N addresses", () => {
    assertProperty(
      fc.property(
        fc
          .integer({ min: 1, max: 256 })
          .chain((a) => fc.tuple(fc.constant(a), fc.integer({ min: 1, max: a }))),
        ([addresses, nodes]) => {
          let next = 0;
          for (let k = 0; k < nodes; k++) {
            const p = nodePart(addresses, nodes, k);
            assert.equal(p.first, next, "each part starts where the one before ended");
            assert.ok(p.count === Math.floor(addresses / nodes) || p.count === Math.ceil(addresses / nodes));
            assert.ok(p.count >= 1);
            next += p.count;
          }
          assert.equal(next, addresses, "the parts cover the pool");
        },
      ),
      200,
    );
  });
});

const pools = fc
  .record({
    len: fc.integer({ min: 22, max: 30 }),
    addresses: fc.integer({ min: 1, max: 12 }),
    extraNodes: fc.nat(11),
    poolBase: fc.integer({ min: 0xc6336400, max: 0xc63364f0 }),
  })
  .map(({ len, addresses, extraNodes, poolBase }) => ({
    inside: { base: 0x64400000, size: 2 ** (32 - len), lo: 1024, hi: 65535 },
    pool: Array.from({ length: addresses }, (_, i) => (poolBase + i) >>> 0),
    nodes: Math.min(addresses, 1 + extraNodes),
  }))
  .filter(
    (p) =>
      deterministicProblem({ ...p.inside, addresses: Math.floor(p.pool.length / p.nodes) }) === undefined,
  );

describe("the whole pool's function", () => {
  it("property: through each node every inside address has a range on that node's part, and whois names both", () => {
    assertProperty(
      fc.property(pools, ({ inside, pool, nodes }) => {
        const wp = new DeterministicPool(pool, nodes, inside);
        const owner = new Map<number, number>();
        for (const a of pool) owner.set(a, wp.nodeOf(a));
        // Every address has exactly one owner, and the owners are the parts in order.
        for (let k = 0; k < nodes; k++) {
          const part = nodePart(pool.length, nodes, k);
          for (let j = 0; j < part.count; j++) assert.equal(owner.get(pool[part.first + j]), k);
        }
        const used = new Set<string>();
        for (let k = 0; k < nodes; k++)
          for (let i = 0; i < inside.size; i++) {
            const x = (inside.base + i) >>> 0;
            const r = wp.rangeOf(k, x)!;
            assert.equal(wp.nodeOf(r.outAddr), k, "a node's ranges lie on its own part");
            const key = `${r.outAddr}:${r.first}`;
            assert.equal(used.has(key), false, `two holders of ${key}`);
            used.add(key);
            for (const port of [r.first, r.last])
              assert.deepEqual(wp.whois(r.outAddr, port), {
                node: k,
                inAddr: x,
                first: r.first,
                last: r.last,
              });
          }
        assert.equal(wp.whois(pool[0], inside.lo - 1), undefined);
        assert.equal(wp.whois((pool[pool.length - 1] + 1) >>> 0, inside.lo), undefined);
        assert.equal(wp.rangeOf(0, (inside.base + inside.size) >>> 0), undefined);
      }),
      40,
    );
  });
});
