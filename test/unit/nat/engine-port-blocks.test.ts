// The engine with `[cgnat] port_block`: a host's mappings take ports of its block, the NAT log
// gets one record per block (none per mapping), the block quota is a counted drop, an emptied
// block is freed after the reuse delay, and whois names the holder. Without port blocks the
// engine allocates as before (the other engine tests).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as C from "../../../src/nat/counters.ts";
import {
  EV_MAPPING_CREATED,
  EV_PORT_BLOCK_ADDED,
  EV_PORT_BLOCK_DELETED,
  type NatEvent,
  type NatEventRing,
} from "../../../src/nat/nat-events.ts";
import { BLOCK_REUSE_DELAY_MS } from "../../../src/nat/port-blocks.ts";
import { ip, u16, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";

function drainAll(ring: NatEventRing): NatEvent[] {
  const out: NatEvent[] = [];
  ring.drain((e) => out.push({ ...e }));
  return out;
}

function withBlocks(size = 64, maxPerHost = 2) {
  return makeEngine({
    mode: "pool",
    ports: {
      tcp: { first: 1, last: 65535 },
      udp: { first: 1, last: 65535 },
      icmp: { first: 1, last: 65535 },
    },
    portBlocks: { size, maxPerHost },
    natEvents: { capacity: 1024, sessions: false },
    timeouts: { ...makeEngine().config.timeouts, udpSec: 30 },
  });
}

describe("the engine with port blocks", () => {
  it("maps a host's endpoints to ports of its block and logs the block once", () => {
    const e = withBlocks();
    const ports: number[] = [];
    for (let i = 0; i < 20; i++)
      ports.push(u16(run(e, udp({ src: A, dst: REMOTE, sport: 40000 + i, dport: 53 }), 1000).out, 20));
    const bPort = u16(run(e, udp({ src: B, dst: REMOTE, sport: 40000, dport: 53 }), 1000).out, 20);
    const got = drainAll(e.natEvents!);
    assert.equal(got.filter((x) => x.kind === EV_MAPPING_CREATED).length, 0, "no per-mapping records");
    const blocks = got.filter((x) => x.kind === EV_PORT_BLOCK_ADDED);
    assert.equal(blocks.length, 2);
    const a = blocks.find((x) => x.inAddr === ip(A))!;
    assert.equal(a.outAddr, ip(P));
    assert.equal(a.outPort - a.inPort + 1, 64);
    for (const p of ports) assert.ok(p >= a.inPort && p <= a.outPort, `${p} in ${a.inPort}-${a.outPort}`);
    const b = blocks.find((x) => x.inAddr === ip(B))!;
    assert.ok(bPort >= b.inPort && bPort <= b.outPort);
    assert.deepEqual(
      e.whois(ip(P), ports[3]).map((h) => [h.proto, h.inAddr]),
      [[17, ip(A)]],
    );
  });

  it("refuses a host past its blocks with a counted drop", () => {
    const e = withBlocks(8, 1);
    for (let i = 0; i < 8; i++) run(e, udp({ src: A, dst: REMOTE, sport: 40000 + i, dport: 53 }), 1000);
    const before = e.counters[C.D_PORT_BLOCK_QUOTA];
    run(e, udp({ src: A, dst: REMOTE, sport: 41000, dport: 53 }), 1000);
    assert.equal(e.counters[C.D_PORT_BLOCK_QUOTA], before + 1);
  });

  it("frees a block the reuse delay after its last mapping went, and whois still knows it", () => {
    const e = withBlocks();
    const port = u16(run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }), 1000).out, 20);
    drainAll(e.natEvents!);
    // The flow expires after 30 s idle; the block waits 120 s more.
    e.tick(40_000);
    assert.equal(e.whois(ip(P), port)[0]?.inAddr, ip(A), "held while it waits");
    e.tick(40_000 + BLOCK_REUSE_DELAY_MS - 5000);
    assert.equal(drainAll(e.natEvents!).filter((x) => x.kind === EV_PORT_BLOCK_DELETED).length, 0);
    e.tick(40_000 + BLOCK_REUSE_DELAY_MS + 2000);
    const del = drainAll(e.natEvents!).filter((x) => x.kind === EV_PORT_BLOCK_DELETED);
    assert.equal(del.length, 1);
    assert.equal(del[0].inAddr, ip(A));
    assert.deepEqual(e.whois(ip(P), port), []);
    assert.equal(e.whois(ip(P), port, 2000)[0]?.inAddr, ip(A));
  });
});

describe("port blocks across a restart with the table kept", () => {
  it("a restored engine knows each host's blocks: whois answers and new mappings stay in the block", () => {
    const e = withBlocks();
    const first = u16(run(e, udp({ src: A, dst: REMOTE, sport: 40000, dport: 53 }), 1000).out, 20);
    run(e, udp({ src: B, dst: REMOTE, sport: 40000, dport: 53 }), 1000);
    const parts = { roots: {}, skip: [], classes: {} };
    const image = e.captureState(parts);
    const restored = withBlocks();
    restored.restoreState(image, parts);
    assert.equal(restored.whois(ip(P), first)[0]?.inAddr, ip(A));
    const next = u16(run(restored, udp({ src: A, dst: REMOTE, sport: 40001, dport: 53 }), 2000).out, 20);
    assert.equal(restored.whois(ip(P), next)[0]?.inAddr, ip(A));
  });
});
