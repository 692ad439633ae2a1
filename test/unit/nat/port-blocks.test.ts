// Port blocks (src/nat/port-blocks.ts): a host's ports come from its blocks only, up to its quota
// of blocks; an empty block waits the reuse delay (RFC 6888 REQ-8) before another host gets it;
// every block given and freed is reported once; whois names the holder now and afterwards.
// The clock is the caller's (a number), so the delay is tested without waiting.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { NO_PORT, PortAllocator } from "../../../src/nat/port-allocator.ts";
import {
  BLOCK_QUOTA,
  BLOCK_REUSE_DELAY_MS,
  type BlockSink,
  PortBlocks,
} from "../../../src/nat/port-blocks.ts";
import { IPPROTO_UDP } from "../../../src/packet/ipv4.ts";
import { assertProperty } from "../../helpers/property.ts";

const RANGE = { first: 1, last: 65535 };
const H1 = 0xc0a80001;
const H2 = 0xc0a80002;

function sink(): BlockSink & { log: Array<[string, number, number, number]> } {
  const log: Array<[string, number, number, number]> = [];
  return {
    log,
    blockAdded: (_p, inAddr, _o, first, last) => void log.push(["add", inAddr, first, last]),
    blockDeleted: (_p, inAddr, _o, first, last) => void log.push(["del", inAddr, first, last]),
  };
}

function setup(range = RANGE, size = 512, maxPerHost = 2) {
  const ports = new PortAllocator(range, 1, 7, true);
  const blocks = new PortBlocks(IPPROTO_UDP, range, true, 1, size, maxPerHost);
  return { ports, blocks, events: sink() };
}

describe("port blocks", () => {
  it("gives a host a block of the unprivileged class on first use, and its ports from it", () => {
    const { ports, blocks, events } = setup();
    const p = blocks.allocate(ports, 0, H1, 40000, false, 0, events);
    assert.equal(events.log.length, 1);
    const [, host, first, last] = events.log[0];
    assert.equal(host, H1);
    assert.equal(last - first + 1, 512);
    assert.ok(first >= 1024 && (first - 1024) % 512 === 0);
    assert.ok(p >= first && p <= last);
    // More mappings: the same block, no new record.
    for (let i = 0; i < 100; i++) {
      const q = blocks.allocate(ports, 0, H1, 5000 + i, false, 0, events);
      assert.ok(q >= first && q <= last, `port ${q} outside ${first}-${last}`);
    }
    assert.equal(events.log.length, 1);
    assert.equal(blocks.holder(0, p), H1);
  });

  it("keeps the inside port when it lies in the host's block", () => {
    const { ports, blocks, events } = setup();
    const p = blocks.allocate(ports, 0, H1, 40000, false, 0, events);
    const [, , first] = events.log[0];
    const wanted = first + 7 === p ? first + 8 : first + 7;
    assert.equal(blocks.allocate(ports, 0, H1, wanted, false, 0, events), wanted);
  });

  it("gives another block when the first is full, and refuses at the quota", () => {
    const { ports, blocks, events } = setup(RANGE, 16, 2);
    const got = new Set<number>();
    for (let i = 0; i < 32; i++) {
      const p = blocks.allocate(ports, 0, H1, 2000, false, 0, events);
      assert.ok(p > 0);
      got.add(p);
    }
    assert.equal(got.size, 32);
    assert.equal(events.log.length, 2);
    assert.equal(blocks.allocate(ports, 0, H1, 2000, false, 0, events), BLOCK_QUOTA);
    assert.equal(blocks.countOf(H1, 0), 2);
    // Another host is not held back by the first one's quota.
    assert.ok(blocks.allocate(ports, 0, H2, 2000, false, 0, events) > 0);
  });

  it("frees an empty block only after the reuse delay; its owner may use it meanwhile", () => {
    // One block on the address: what host 2 can get depends on host 1's block alone.
    const range = { first: 1024, last: 1024 + 63 };
    const { ports, blocks, events } = setup(range, 64, 1);
    const p = blocks.allocate(ports, 0, H1, 1030, false, 1000, events);
    ports.release(0, p);
    blocks.released(0, p, 2000);
    assert.equal(blocks.cooling, 1);
    blocks.sweep(2000 + BLOCK_REUSE_DELAY_MS - 1, events);
    assert.equal(
      blocks.allocate(ports, 0, H2, 1030, false, 2000 + BLOCK_REUSE_DELAY_MS - 1, events),
      NO_PORT,
    );
    // The owner takes it back: it is no longer waiting.
    const again = blocks.allocate(ports, 0, H1, 1030, false, 5000, events);
    assert.ok(again >= 1024);
    assert.equal(blocks.cooling, 0);
    ports.release(0, again);
    blocks.released(0, again, 10_000);
    blocks.sweep(10_000 + BLOCK_REUSE_DELAY_MS, events);
    assert.deepEqual(
      events.log.map((e) => e[0]),
      ["add", "del"],
    );
    assert.equal(blocks.held, 0);
    const q = blocks.allocate(ports, 0, H2, 1030, false, 10_000 + BLOCK_REUSE_DELAY_MS, events);
    assert.ok(q >= 1024);
    assert.deepEqual(events.log[2], ["add", H2, 1024, 1087]);
  });

  it("whois names the holder now and, with a time, from the freed blocks remembered", () => {
    const range = { first: 1024, last: 1024 + 63 };
    const { ports, blocks, events } = setup(range, 64, 1);
    const p = blocks.allocate(ports, 0, H1, 1030, false, 1000, events);
    assert.equal(blocks.whois(0, 1050)?.inAddr, H1);
    ports.release(0, p);
    blocks.released(0, p, 2000);
    blocks.sweep(2000 + BLOCK_REUSE_DELAY_MS, events);
    assert.equal(blocks.whois(0, 1050), undefined);
    blocks.allocate(ports, 0, H2, 1030, false, 200_000, events);
    assert.equal(blocks.whois(0, 1050)?.inAddr, H2);
    assert.equal(blocks.whois(0, 1050, 1500)?.inAddr, H1);
    assert.equal(blocks.whois(0, 1050, 1500)?.untilMs, 2000 + BLOCK_REUSE_DELAY_MS);
    assert.equal(blocks.whois(0, 1050, 250_000)?.inAddr, H2);
    assert.equal(blocks.whois(0, 1050, 500), undefined);
    assert.equal(blocks.whois(0, 100), undefined, "below the blocks");
  });

  it("property: every port a host gets lies in a block it holds, and no two hosts share a block", () => {
    assertProperty(
      fc.property(
        fc.array(
          fc.record({ host: fc.integer({ min: 1, max: 6 }), release: fc.boolean(), dt: fc.nat(60_000) }),
          {
            maxLength: 300,
          },
        ),
        (steps) => {
          const range = { first: 1024, last: 1024 + 32 * 12 - 1 };
          const { ports, blocks, events } = setup(range, 32, 2);
          const held: Array<[number, number]> = [];
          let now = 0;
          for (const st of steps) {
            now += st.dt;
            blocks.sweep(now, events);
            if (st.release && held.length > 0) {
              const [, p] = held.splice(st.dt % held.length, 1)[0];
              ports.release(0, p);
              blocks.released(0, p, now);
              continue;
            }
            const p = blocks.allocate(ports, 0, st.host, 1024, false, now, events);
            if (p < 0) continue;
            assert.equal(blocks.holder(0, p), st.host);
            held.push([st.host, p]);
          }
          for (const [h, p] of held) assert.equal(blocks.holder(0, p), h);
          // Each block's adds and deletes alternate, and the holders never overlap.
          const owner = new Map<number, number>();
          for (const [kind, h, first] of events.log) {
            if (kind === "add") {
              assert.equal(owner.has(first), false);
              owner.set(first, h);
            } else {
              assert.equal(owner.get(first), h);
              owner.delete(first);
            }
          }
        },
      ),
      100,
    );
  });
});
