// The flow table's listing cursor (src/nat/flow-listing.ts): filters, the newest-first bound, and
// a table that changes while the listing runs.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { FlowFilter } from "../../../src/nat/flow-listing.ts";
import { STATE_NAMES } from "../../../src/nat/flow-table.ts";
import type { FlowView } from "../../../src/nat/view.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../../../src/packet/ipv4.ts";
import { icmpEcho, ip, SYN, tcp, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, P } from "./engine-helpers.ts";

type NatEngine = ReturnType<typeof makeEngine>;

/** Runs a listing to its end in steps of `budget`, collecting the views it emits. */
function list(
  e: NatEngine,
  filter: FlowFilter,
  limit: number,
  budget = 7,
): { views: FlowView[]; matched: number } {
  const l = e.listFlows(filter, limit);
  const views: FlowView[] = [];
  for (let guard = 0; !l.done; guard++) {
    assert.ok(guard < 1_000_000, "the listing ends");
    l.step(budget, (f) => views.push(e.flowView(f)));
  }
  return { views, matched: l.matched };
}

/** Every live flow, straight from the table: the model a listing is checked against. */
function everyFlow(e: NatEngine): FlowView[] {
  const out: FlowView[] = [];
  for (let f = 0; f < e.flowTable.capacity; f++) if (e.flowTable.isLive(f)) out.push(e.flowView(f));
  return out;
}

const inPrefix = (a: string, net: { addr: number; mask: number }) => (ip(a) & net.mask) >>> 0 === net.addr;
const PROTO_NAMES: Record<number, string> = {
  [IPPROTO_TCP]: "tcp",
  [IPPROTO_UDP]: "udp",
  [IPPROTO_ICMP]: "icmp",
};

function modelMatches(v: FlowView, q: FlowFilter): boolean {
  if (q.proto !== undefined && v.protocol !== PROTO_NAMES[q.proto]) return false;
  if (q.state !== undefined && v.state !== STATE_NAMES[q.state]) return false;
  if (q.net !== undefined) {
    const net = q.net;
    if (![v.inside.addr, v.outside.addr, v.remote.addr].some((a) => inPrefix(a, net))) return false;
  }
  return true;
}

const key = (v: FlowView) =>
  `${v.protocol} ${v.inside.addr}:${v.inside.port} ${v.remote.addr}:${v.remote.port}`;

describe("flow listing", () => {
  it("shows the flows the filter matches, the `limit` most recently active first, whatever the step size", () => {
    const flow = fc.record({
      kind: fc.constantFrom("udp", "tcp", "icmp"),
      host: fc.integer({ min: 2, max: 5 }),
      remote: fc.integer({ min: 1, max: 6 }),
      port: fc.integer({ min: 1, max: 40 }),
      atSec: fc.integer({ min: 0, max: 50 }),
    });
    const filter = fc.record(
      {
        proto: fc.constantFrom(IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP),
        state: fc.constantFrom(0, 1),
        net: fc.constantFrom(
          { addr: ip("192.168.0.2"), mask: 0xffffffff },
          { addr: ip("203.0.113.0"), mask: 0xfffffffc },
          { addr: ip(P), mask: 0xffffffff },
          { addr: ip("10.0.0.0"), mask: 0xff000000 },
        ),
      },
      { requiredKeys: [] },
    );
    assertProperty(
      fc.property(
        fc.array(flow, { maxLength: 120 }),
        filter,
        fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined }),
        fc.integer({ min: 1, max: 300 }),
        (flows, q, limit, budget) => {
          const e = makeEngine();
          // In time order, as packets come: the engine clock never goes back.
          for (const f of [...flows].sort((a, b) => a.atSec - b.atSec)) {
            const o = { src: `192.168.0.${f.host}`, dst: `203.0.113.${f.remote}` };
            const pkt =
              f.kind === "udp"
                ? udp({ ...o, sport: 1000 + f.port, dport: 53 })
                : f.kind === "tcp"
                  ? tcp({ ...o, sport: 1000 + f.port, dport: 80, flags: SYN })
                  : icmpEcho({ ...o, id: f.port });
            e.process(pkt, 0, pkt.length, 1_000_000 + f.atSec * 1000);
          }
          const model = everyFlow(e).filter((v) => modelMatches(v, q));
          const { views, matched } = list(e, q, limit ?? Number.POSITIVE_INFINITY, budget);
          assert.equal(matched, model.length);
          assert.equal(views.length, Math.min(limit ?? model.length, model.length));
          assert.ok(
            views.every((v) => modelMatches(v, q)),
            "every flow shown matches",
          );
          assert.equal(new Set(views.map(key)).size, views.length, "no flow twice");
          const idle = views.map((v) => v.idleSec);
          const best = model.map((v) => v.idleSec).sort((a, b) => a - b);
          assert.deepEqual(idle, best.slice(0, views.length), "newest activity first, and the newest ones");
        },
      ),
      150,
    );
  });

  it("leaves out flows that end while it runs, and never shows a slot's new flow in the old one's place", () => {
    const e = makeEngine();
    for (let i = 0; i < 50; i++) {
      const p = udp({ src: "192.168.0.2", dst: "203.0.113.10", sport: 2000 + i, dport: 53 });
      e.process(p, 0, p.length, 1_000_000);
    }
    const l = e.listFlows({}, Number.POSITIVE_INFINITY);
    const shown: FlowView[] = [];
    l.step(e.flowTable.capacity, (f) => shown.push(e.flowView(f))); // the scan, nothing emitted yet
    assert.equal(l.matched, 50);
    assert.equal(shown.length, 0);
    e.tick(1_000_000 + 301_000 * 2); // past the UDP timeout: all 50 expire
    assert.equal(e.flowTable.count, 0);
    for (let i = 0; i < 50; i++) {
      const p = udp({ src: "192.168.0.3", dst: "203.0.113.11", sport: 3000 + i, dport: 53 });
      e.process(p, 0, p.length, 1_000_000 + 602_000);
    }
    assert.equal(e.flowTable.count, 50, "the new flows took the freed slots");
    while (!l.done) l.step(16, (f) => shown.push(e.flowView(f)));
    assert.deepEqual(shown, []);
    assert.equal(list(e, {}, 100).views.length, 50, "a new listing sees the new flows");
  });

  it("the engine's flows() is the same listing run at once", () => {
    const e = makeEngine();
    for (let i = 0; i < 5; i++) {
      const p = udp({ src: "192.168.0.2", dst: "203.0.113.10", sport: 2000 + i, dport: 53 });
      e.process(p, 0, p.length, 1_000_000 + i * 1000);
    }
    assert.deepEqual(
      e.flows(3).map((v) => v.inside.port),
      [2004, 2003, 2002],
    );
  });
});
