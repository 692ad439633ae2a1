// Address-only NAT for the protocols other than TCP, UDP and ICMP (src/nat/generic-flow.ts), as
// netfilter's generic handler does it: one flow per (inside host, remote, protocol).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_TIMEOUTS } from "../../../src/nat/config.ts";
import { DROP, FORWARD, HELD, SIDE_INSIDE, SIDE_OUTSIDE } from "../../../src/nat/engine.ts";
import { checksum } from "../../../src/packet/checksum.ts";
import {
  checksumProblems,
  datagram,
  icmpError,
  ip,
  pseudoHeaderChecksum,
  splitFragments,
  u32,
} from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
const ESP = 50;
const GRE = 47;
const SCTP = 132;
const IPIP = 4;
const DCCP = 33;
const UDPLITE = 136;

/** An ESP packet: SPI, sequence number, then opaque bytes. */
function esp(src: string, dst: string, spi = 0x1001, length = 64) {
  const payload = new Uint8Array(length);
  payload.set([spi >>> 24, (spi >>> 16) & 0xff, (spi >>> 8) & 0xff, spi & 0xff, 0, 0, 0, 1], 0);
  for (let i = 8; i < length; i++) payload[i] = (i * 7) & 0xff;
  return datagram({ src, dst, proto: ESP, payload });
}

function packet(proto: number, src: string, dst: string, payload = new Uint8Array(32).fill(0x5a)) {
  return datagram({ src, dst, proto, payload });
}

describe("address-only NAT for the other IP protocols", () => {
  it("ESP out: the source becomes the public address, the header checksum stays right, the payload is untouched", () => {
    const e = makeEngine();
    const pkt = esp(A, REMOTE);
    const { verdict, out } = run(e, pkt);
    assert.equal(verdict, FORWARD);
    assert.equal(u32(out, 12), ip(P));
    assert.equal(u32(out, 16), ip(REMOTE));
    assert.equal(checksum(out, 0, 20), 0);
    assert.deepEqual(out.subarray(20), pkt.subarray(20));
    // The answer goes back to the host.
    const back = run(e, esp(REMOTE, P, 0x2002));
    assert.equal(back.verdict, FORWARD);
    assert.equal(u32(back.out, 16), ip(A));
    assert.equal(checksum(back.out, 0, 20), 0);
    const c = e.stats().counters;
    assert.equal(c.translated_out, 1);
    assert.equal(c.translated_in, 1);
    assert.equal(c.flows_created, 1);
  });

  it("lists the flow by protocol name with no ports, active, expiring after the generic timeout (600 s)", () => {
    const e = makeEngine();
    run(e, esp(A, REMOTE), 5000);
    run(e, packet(GRE, A, REMOTE, new Uint8Array([0, 0, 0x08, 0, 1, 2, 3, 4])), 5000);
    run(e, packet(103, A, REMOTE), 5000);
    const flows = e.flows();
    assert.deepEqual(flows.map((f) => f.protocol).sort(), ["103", "esp", "gre"]);
    for (const f of flows) {
      assert.deepEqual(f.inside, { addr: A, port: 0 });
      assert.deepEqual(f.outside, { addr: P, port: 0 });
      assert.deepEqual(f.remote, { addr: REMOTE, port: 0 });
      assert.equal(f.state, "active");
      assert.equal(f.origin, "outbound");
      assert.equal(f.expiresInSec, DEFAULT_TIMEOUTS.genericSec);
      assert.equal(f.packetsOut, 1);
    }
  });

  it("a second inside host to the same remote with the same protocol is refused and counted", () => {
    const e = makeEngine();
    assert.equal(run(e, esp(A, REMOTE)).verdict, FORWARD);
    assert.equal(run(e, esp(B, REMOTE)).verdict, DROP);
    assert.equal(e.lastDrop > 0, true);
    assert.equal(e.stats().counters.drop_protocol_remote_taken, 1);
    // Another protocol, or another remote, is another flow.
    assert.equal(run(e, packet(GRE, B, REMOTE, new Uint8Array([0, 0, 0x08, 0]))).verdict, FORWARD);
    assert.equal(run(e, esp(B, "203.0.113.11")).verdict, FORWARD);
    // The first host's flow is intact: replies still go to it.
    assert.equal(u32(run(e, esp(REMOTE, P)).out, 16), ip(A));
    assert.equal(e.stats().flows, 3);
  });

  it("with several public addresses each host's own (paired) address tells their flows apart", () => {
    const e = makeEngine({ outside: [ip(P), ip("198.51.100.3"), ip("198.51.100.4"), ip("198.51.100.5")] });
    const seen = new Map<number, string>();
    let refused = 0;
    for (let h = 2; h < 40; h++) {
      const host = `192.168.0.${h}`;
      const addr = e.pairedAddress(ip(host));
      const v = run(e, esp(host, REMOTE)).verdict;
      if (seen.has(addr)) {
        assert.equal(v, DROP, `${host} shares ${addr} with ${seen.get(addr)}`);
        refused++;
      } else {
        assert.equal(v, FORWARD);
        seen.set(addr, host);
      }
    }
    assert.equal(seen.size, 4);
    assert.equal(e.stats().counters.drop_protocol_remote_taken, refused);
  });

  it("unsolicited inbound packets open nothing: dropped in pool mode, the gateway's own in interface mode", () => {
    const pool = makeEngine();
    assert.equal(run(pool, esp(REMOTE, P)).verdict, DROP);
    assert.equal(pool.stats().counters.drop_no_mapping, 1);
    assert.equal(pool.stats().flows, 0);
    const iface = makeEngine({ mode: "interface" });
    const r = run(iface, esp(REMOTE, P));
    assert.equal(r.verdict, FORWARD);
    assert.equal(u32(r.out, 16), ip(P)); // untouched, for the gateway's stack
    assert.equal(iface.stats().counters.passthrough, 1);
    assert.equal(iface.stats().flows, 0);
  });

  it("a packet from the flow's remote with another protocol is not the flow's", () => {
    const e = makeEngine();
    run(e, esp(A, REMOTE));
    assert.equal(run(e, packet(SCTP, REMOTE, P)).verdict, DROP);
    assert.equal(run(e, esp("203.0.113.99", P)).verdict, DROP);
    assert.equal(e.stats().counters.drop_no_mapping, 2);
  });

  it("works by arrival side too, and a forged inside source from outside is still refused", () => {
    const e = makeEngine();
    const buf = esp(A, REMOTE);
    assert.equal(e.process(buf, 0, buf.length, 1000, false, SIDE_INSIDE), FORWARD);
    const back = esp(REMOTE, P);
    assert.equal(e.process(back, 0, back.length, 1000, false, SIDE_OUTSIDE), FORWARD);
    assert.equal(u32(back, 16), ip(A));
    const forged = esp(B, REMOTE);
    assert.equal(e.process(forged, 0, forged.length, 1000, false, SIDE_OUTSIDE), DROP);
    assert.equal(e.stats().counters.drop_inside_source_from_outside, 1);
  });

  it("the flow lives while packets come and goes after the timeout, which is configurable", () => {
    const e = makeEngine({ timeouts: { ...DEFAULT_TIMEOUTS, genericSec: 30 } });
    run(e, esp(A, REMOTE), 1000);
    e.tick(20_000);
    run(e, esp(REMOTE, P), 20_000);
    e.tick(49_000);
    assert.equal(e.stats().flows, 1);
    e.tick(51_000);
    assert.equal(e.stats().flows, 0);
    assert.equal(run(e, esp(REMOTE, P), 51_000).verdict, DROP);
    // Gone, the remote is free for another host.
    assert.equal(run(e, esp(B, REMOTE), 52_000).verdict, FORWARD);
    assert.equal(e.stats().counters.flows_expired, 1);
  });

  it("SCTP, GRE and IPIP keep their L4 bytes: their checksums do not cover the IP addresses", () => {
    const e = makeEngine();
    for (const proto of [SCTP, GRE, IPIP]) {
      const pkt = packet(
        proto,
        A,
        REMOTE,
        new Uint8Array(48).map((_, i) => (i * 13 + proto) & 0xff),
      );
      const { verdict, out } = run(e, pkt);
      assert.equal(verdict, FORWARD);
      assert.deepEqual(out.subarray(20), pkt.subarray(20), `protocol ${proto}`);
      assert.deepEqual(checksumProblems(out), []);
    }
  });

  it("DCCP and UDP-Lite: the pseudo-header checksum is updated with the address, both ways", () => {
    for (const proto of [DCCP, UDPLITE]) {
      const e = makeEngine();
      const payload = new Uint8Array(40).map((_, i) => (i * 5) & 0xff);
      const pkt = packet(proto, A, REMOTE, payload);
      pkt[26] = 0;
      pkt[27] = 0;
      const ck = pseudoHeaderChecksum(pkt);
      pkt.set([ck >> 8, ck & 0xff], 26);
      assert.equal(pseudoHeaderChecksum(pkt), 0);
      const out = run(e, pkt).out;
      assert.equal(u32(out, 12), ip(P));
      assert.equal(pseudoHeaderChecksum(out), 0, `protocol ${proto} out`);
      const back = packet(proto, REMOTE, P, payload);
      back[26] = 0;
      back[27] = 0;
      const bk = pseudoHeaderChecksum(back);
      back.set([bk >> 8, bk & 0xff], 26);
      const inb = run(e, back).out;
      assert.equal(u32(inb, 16), ip(A));
      assert.equal(pseudoHeaderChecksum(inb), 0, `protocol ${proto} in`);
    }
  });

  it("fragments: translated like their first, held until it when they come before", () => {
    const e = makeEngine();
    const frags = splitFragments(esp(A, REMOTE, 0x1001, 1400), 512, 0x4242);
    assert.equal(frags.length, 3);
    // The last one first: held.
    const buf = new Uint8Array(2048);
    buf.set(frags[2], 0);
    assert.equal(e.process(buf, 0, frags[2].length, 1000), HELD);
    for (const f of frags.slice(0, 2)) {
      const r = run(e, f);
      assert.equal(r.verdict, FORWARD);
      assert.equal(u32(r.out, 12), ip(P));
      assert.equal(checksum(r.out, 0, 20), 0);
    }
    const released = e.takePending();
    assert.ok(released);
    assert.equal(u32(released, 12), ip(P));
    assert.equal(checksum(released, 0, 20), 0);
    // Inbound fragments of the answer.
    for (const f of splitFragments(esp(REMOTE, P, 0x2002, 1400), 512, 0x5151)) {
      const r = run(e, f);
      assert.equal(r.verdict, FORWARD);
      assert.equal(u32(r.out, 16), ip(A));
    }
    // A refused datagram's later fragments go with it.
    const refused = splitFragments(esp(B, REMOTE, 0x3003, 1400), 512, 0x6161);
    assert.equal(run(e, refused[0]).verdict, DROP);
    assert.equal(run(e, refused[1]).verdict, DROP);
    assert.equal(e.stats().counters.drop_fragment_of_dropped, 1);
  });

  it("an ICMP error about an outbound packet (fragmentation needed for ESP) goes back to the inside host", () => {
    const e = makeEngine();
    const out = run(e, esp(A, REMOTE, 0x1001, 1400)).out;
    const err = icmpError({
      from: "203.0.113.1",
      to: P,
      type: 3,
      code: 4,
      quoted: out,
      quoteLen: 28,
      mtu: 1400,
    });
    const r = run(e, err);
    assert.equal(r.verdict, FORWARD);
    assert.equal(u32(r.out, 16), ip(A));
    assert.equal(u32(r.out, 28 + 12), ip(A)); // the quoted source, as the host sent it
    assert.deepEqual(checksumProblems(r.out), []);
    assert.equal(e.stats().counters.icmp_errors_translated, 1);
  });

  it("a firewall rule for any protocol screens the new flow", () => {
    const e = makeEngine({
      firewall: [
        { direction: "outbound", action: "drop", destination: { addr: ip("203.0.113.66"), len: 32 } },
      ],
    });
    assert.equal(run(e, esp(A, "203.0.113.66")).verdict, DROP);
    assert.equal(e.stats().counters.drop_firewall_drop, 1);
    assert.equal(run(e, esp(A, REMOTE)).verdict, FORWARD);
  });

  it("the per-host flow limit applies", () => {
    const e = makeEngine({ maxFlowsPerHost: 2 });
    assert.equal(run(e, esp(A, "203.0.113.1")).verdict, FORWARD);
    assert.equal(run(e, esp(A, "203.0.113.2")).verdict, FORWARD);
    assert.equal(run(e, esp(A, "203.0.113.3")).verdict, DROP);
    assert.equal(e.stats().counters.drop_host_flow_limit, 1);
  });

  it("to our own public address: nothing to translate to (pool mode drops, interface mode hands it to the gateway)", () => {
    const pool = makeEngine();
    assert.equal(run(pool, esp(A, P)).verdict, DROP);
    assert.equal(pool.stats().flows, 0);
    const iface = makeEngine({ mode: "interface" });
    assert.equal(run(iface, esp(A, P)).verdict, FORWARD);
    assert.equal(iface.stats().counters.passthrough, 1);
  });
});
