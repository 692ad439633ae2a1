// `[cgnat] nodes` and `node`: deterministic mode on several gateways sharing one pool. Each
// gateway's configuration differs in `node` alone; each one claims its own part of the pool,
// its engine's function over that part is the whole pool's function for that node, and whois
// answers the same on every node for every address of the pool (RFC 7422 §1).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { scaleOutOf } from "../../../src/control/cgnat-config.ts";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { engineConfigFor } from "../../../src/control/engine-config.ts";
import { whoisAnswer } from "../../../src/control/whois.ts";
import { expandPrefix, parsePrefix } from "../../../src/host/ipv4.ts";
import { Deterministic } from "../../../src/nat/deterministic.ts";
import type { NatEngine } from "../../../src/nat/engine.ts";
import { formatIpv4, parseIpv4 } from "../../../src/packet/addr.ts";
import { errorOf } from "../../helpers/config-error.ts";
import { assertProperty } from "../../helpers/property.ts";

const flags = (pool: string) => ({ inside: ["lan0"], outside: "wan0", address: [pool], config: "masq.toml" });
const section = (inside: string, nodes: number, node: number) =>
  `[cgnat]\nmode = "deterministic"\ninside = "${inside}"\nnodes = ${nodes}\nnode = ${node}\n`;
const config = (pool: string, inside: string, nodes: number, node: number) =>
  resolveRunConfig(flags(pool), () => section(inside, nodes, node));

/** Never called: a scale-out whois reads the configuration's function, not the engine. */
const noEngine = {} as NatEngine;

describe("[cgnat] nodes and node", () => {
  it("each gateway owns its part of the pool, and nothing else", () => {
    const parts = [0, 1, 2].map((k) => config("198.51.100.96/29", "100.64.0.0/24", 3, k).addresses);
    assert.deepEqual(parts, [
      ["198.51.100.96", "198.51.100.97"],
      ["198.51.100.98", "198.51.100.99", "198.51.100.100"],
      ["198.51.100.101", "198.51.100.102", "198.51.100.103"],
    ]);
    const c = config("198.51.100.96/29", "100.64.0.0/24", 3, 1);
    assert.deepEqual(c.cgnat.scaleOut, {
      nodes: 3,
      node: 1,
      pool: expandPrefix(parsePrefix("198.51.100.96/29")),
    });
  });

  it("refuses what cannot work, naming the key", () => {
    const pool = "198.51.100.100/31";
    const refuse = (text: string, p = pool) => errorOf(() => resolveRunConfig(flags(p), () => text));
    assert.match(
      refuse('[cgnat]\nmode = "deterministic"\ninside = "100.64.0.0/24"\nnodes = 2'),
      /masq\.toml: cgnat\.node: missing: which of the 2 gateways/,
    );
    assert.match(
      refuse('[cgnat]\nmode = "deterministic"\ninside = "100.64.0.0/24"\nnode = 1'),
      /cgnat\.node: needs cgnat\.nodes/,
    );
    assert.match(
      refuse(section("100.64.0.0/24", 2, 2)),
      /cgnat\.node: 2 is not one of the 2 gateways \(0-1\)/,
    );
    assert.match(
      refuse(section("100.64.0.0/24", 3, 0)),
      /masq\.toml: cgnat\.nodes: 3 gateways need at least 3 pool addresses.*has 2/,
    );
    assert.match(refuse(section("100.64.0.0/24", 0, 0)), /cgnat\.nodes: must be at least 1/);
    assert.match(refuse(section("100.64.0.0/24", 65, 0)), /cgnat\.nodes: must be at most 64/);
    assert.match(
      refuse("[cgnat]\nport_block = 512\nnodes = 2"),
      /cgnat\.nodes: is for mode = "deterministic"/,
    );
    // A /22 on one address of a part leaves each inside address 63 ports.
    assert.match(
      refuse(section("100.64.0.0/22", 2, 0)),
      /masq\.toml: cgnat\.inside: each gateway's part of the pool.*63 ports/,
    );
  });

  it("nodes = 1 is one gateway: the whole pool, no scale-out", () => {
    const c = config("198.51.100.100/31", "100.64.0.0/24", 1, 0);
    assert.equal(c.cgnat.scaleOut, undefined);
    assert.deepEqual(c.addresses, ["198.51.100.100/31"]);
  });

  it("property: every node's engine maps as the whole pool's function says, and whois is the same on every node", () => {
    const cases = fc
      .record({
        len: fc.integer({ min: 24, max: 28 }),
        poolLen: fc.integer({ min: 28, max: 31 }),
        extra: fc.nat(7),
      })
      .map(({ len, poolLen, extra }) => ({
        inside: `100.64.0.0/${len}`,
        pool: `198.51.100.96/${poolLen}`,
        nodes: Math.min(2 ** (32 - poolLen), 2 + extra),
      }));
    assertProperty(
      fc.property(cases, fc.nat(), ({ inside, pool, nodes }, probe) => {
        const cfgs = Array.from({ length: nodes }, (_, k) => config(pool, inside, nodes, k));
        const wps = cfgs.map((c) => scaleOutOf(c.cgnat, c.ports).scaleOut!);
        const size = 2 ** (32 - Number(inside.split("/")[1]));
        for (const [k, c] of cfgs.entries()) {
          // The engine of node k, set up as the daemon sets it up, from its own addresses.
          const engine = engineConfigFor(c, {
            mode: "pool",
            publicAddresses: c.addresses,
            insideNetworks: [inside],
            mtu: 1500,
          });
          const d = new Deterministic(engine.deterministic!);
          const x = (parseIpv4("100.64.0.0")! + (probe % size)) >>> 0;
          const i = d.indexOf(x);
          const r = wps[0].pool.rangeOf(k, x)!;
          assert.equal(formatIpv4(r.outAddr), c.addresses[d.addressOf(i)]);
          assert.equal(r.first, d.firstPort(i));
          // Asked of every node, any port of that range names node k and x.
          const port = r.first + (probe % (r.last - r.first + 1));
          const q = new URLSearchParams({ address: formatIpv4(r.outAddr), port: String(port) });
          const answers = wps.map((w) => whoisAnswer(noEngine, q, w).holders);
          for (const a of answers) assert.deepEqual(a, answers[0]);
          assert.deepEqual(
            answers[0].map((h) => [h.inside, h.node, h.block.first]),
            [[formatIpv4(x), k, r.first]],
          );
        }
      }),
      40,
    );
  });
});
