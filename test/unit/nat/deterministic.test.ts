// Deterministic NAT's function (src/nat/deterministic.ts, RFC 7422): every inside address of the
// prefix gets a range of its own (disjoint), all of them get one (covers), the inverse names the
// holder of every port of a range (what whois answers with), and a plan that leaves too few ports
// is refused. The engine maps a host's endpoints into its range and logs no mapping.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import * as C from "../../../src/nat/counters.ts";
import {
  Deterministic,
  deterministicProblem,
  MIN_DETERMINISTIC_PORTS,
} from "../../../src/nat/deterministic.ts";
import { ip, u16, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, REMOTE, run } from "./engine-helpers.ts";

const plans = fc
  .record({
    len: fc.integer({ min: 20, max: 32 }),
    addresses: fc.integer({ min: 1, max: 16 }),
    seedAddr: fc.nat(),
  })
  .map(({ len, addresses, seedAddr }) => ({
    base: (((seedAddr << (32 - len)) >>> 0) & 0xffffffff) >>> 0,
    size: 2 ** (32 - len),
    addresses,
    lo: 1024,
    hi: 65535,
  }))
  .filter((p) => deterministicProblem(p) === undefined);

describe("deterministic NAT's function", () => {
  it("property: ranges are disjoint, every inside address has one of at least the minimum, the inverse names it", () => {
    assertProperty(
      fc.property(plans, (p) => {
        const d = new Deterministic(p);
        assert.ok(d.ports >= MIN_DETERMINISTIC_PORTS);
        const seen = new Set<string>();
        for (let i = 0; i < p.size; i++) {
          const a = d.addressOf(i);
          assert.ok(a >= 0 && a < p.addresses);
          const first = d.firstPort(i);
          const last = first + d.ports - 1;
          assert.ok(first >= p.lo && last <= p.hi);
          const key = `${a}:${first}`;
          assert.equal(seen.has(key), false, `two inside addresses on ${key}`);
          seen.add(key);
          const inAddr = (p.base + i) >>> 0;
          assert.equal(d.indexOf(inAddr), i);
          for (const port of [first, first + (i % d.ports), last]) assert.equal(d.insideOf(a, port), inAddr);
        }
        // Ports beyond every range, and addresses beyond the pool, have no holder.
        assert.equal(d.insideOf(p.addresses, p.lo), -1);
        assert.equal(d.insideOf(0, p.lo - 1), -1);
      }),
      60,
    );
  });

  it("refuses a plan that leaves an inside address fewer than the minimum ports", () => {
    // 1024 inside addresses on one outside address: 63 ports each.
    const why = deterministicProblem({
      base: ip("100.64.0.0"),
      size: 1024,
      addresses: 1,
      lo: 1024,
      hi: 65535,
    });
    assert.match(why ?? "", /leave 63 ports .* fewer than 64/);
    assert.equal(
      deterministicProblem({ base: ip("100.64.0.0"), size: 1024, addresses: 2, lo: 1024, hi: 65535 }),
      undefined,
    );
  });

  it("the engine maps a host into its range on its address, logs no mapping, drops a host outside the prefix", () => {
    const outside = [ip("198.51.100.100"), ip("198.51.100.101")];
    const plan = { base: ip("192.168.0.0"), size: 128, addresses: 2, lo: 1024, hi: 65535 };
    const e = makeEngine({
      mode: "pool",
      outside,
      ports: {
        tcp: { first: 1, last: 65535 },
        udp: { first: 1, last: 65535 },
        icmp: { first: 1, last: 65535 },
      },
      deterministic: plan,
      natEvents: { capacity: 64, sessions: false },
    });
    const d = new Deterministic(plan);
    for (const host of ["192.168.0.5", "192.168.0.100"]) {
      const i = d.indexOf(ip(host));
      const out = run(e, udp({ src: host, dst: REMOTE, sport: 40000, dport: 53 })).out;
      const port = u16(out, 20);
      assert.equal(new DataView(out.buffer, out.byteOffset).getUint32(12), outside[d.addressOf(i)]);
      assert.ok(port >= d.firstPort(i) && port < d.firstPort(i) + d.ports, `${host}: ${port}`);
      assert.deepEqual(
        e.whois(outside[d.addressOf(i)], port).map((h) => [h.proto, h.inAddr]),
        [[0, ip(host)]],
      );
    }
    assert.equal(e.natEvents!.pending, 0, "no mapping records");
    run(e, udp({ src: "192.168.0.200", dst: REMOTE, sport: 40000, dport: 53 }));
    assert.equal(e.counters[C.D_NOT_DETERMINISTIC], 1);
  });
});
