// Interface mode's public address changes (src/nat/public-address.ts): flows on the old address
// go, with resets for the inside hosts' TCP connections (RFC 6886 §3.4); pins move; while there
// is no address nothing leaves untranslated.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  C_ADDRESS_CHANGES,
  C_ADDRESS_FLOWS_DROPPED,
  C_ADDRESS_RESETS,
  D_NO_PUBLIC_ADDRESS,
} from "../../../src/nat/counters.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { ACK, checksumProblems, ip, RST, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { CLIENT_ISN, makeEngine, openOutbound, P, REMOTE, run, SERVER_ISN } from "./engine-helpers.ts";

const A = "192.168.0.2";
const NEW = "198.51.100.77";

/** A-box's next segment on the connection openOutbound made from port 40000 to REMOTE:80. */
const nextSegment = () =>
  tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags: ACK, seq: CLIENT_ISN + 1, ack: SERVER_ISN + 1 });

describe("the public address changes (interface mode)", () => {
  it("drops the old address's flows and resets each TCP connection to its inside host, checksums right", () => {
    const e = makeEngine({ mode: "interface" });
    const port = openOutbound(e, A, 40000, REMOTE, 80);
    // 100 bytes from the server: the host now expects SERVER_ISN + 1 + 100.
    run(
      e,
      tcp({
        src: REMOTE,
        dst: P,
        sport: 80,
        dport: port,
        flags: ACK,
        seq: SERVER_ISN + 1,
        ack: CLIENT_ISN + 1,
        payload: 100,
      }),
    );
    run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 53 }));
    assert.equal(e.stats().flows, 2);

    const change = e.changePublicAddress(ip(NEW));
    assert.equal(change.old, ip(P));
    assert.equal(change.flows, 2);
    assert.equal(change.resets.length, 1);
    const rst = change.resets[0];
    assert.deepEqual(checksumProblems(rst), []);
    assert.equal(u32(rst, 12), ip(REMOTE), "from the remote");
    assert.equal(u32(rst, 16), ip(A), "to the inside host");
    assert.equal(u16(rst, 20), 80);
    assert.equal(u16(rst, 22), 40000);
    assert.equal(u32(rst, 24), SERVER_ISN + 1 + 100, "at the host's next expected number (RFC 5961 §3.2)");
    assert.equal(u32(rst, 28), CLIENT_ISN + 1);
    assert.equal(rst[33], RST | ACK);
    assert.equal(e.stats().flows, 0);
    assert.equal(e.stats().mappings, 0);
    assert.equal(e.counters[C_ADDRESS_CHANGES], 1);
    assert.equal(e.counters[C_ADDRESS_FLOWS_DROPPED], 2);
    assert.equal(e.counters[C_ADDRESS_RESETS], 1);

    // New connections use the new address; the old one is no longer masq's.
    const syn = run(e, tcp({ src: A, dst: REMOTE, sport: 40001, dport: 80, flags: SYN }));
    assert.equal(syn.verdict, FORWARD);
    assert.equal(u32(syn.out, 12), ip(NEW));
    const stale = run(
      e,
      tcp({ src: REMOTE, dst: P, sport: 80, dport: port, flags: ACK, seq: SERVER_ISN + 101 }),
    );
    assert.equal(stale.verdict, FORWARD, "not masq's address any more: passed to the gateway's own stack");
    assert.equal(e.pairedAddress(ip(A)), ip(NEW));
  });

  it("resets a connection still in SYN-SENT by acknowledging its SYN (RFC 9293 §3.10.7.3)", () => {
    const e = makeEngine({ mode: "interface" });
    run(e, tcp({ src: A, dst: REMOTE, sport: 40000, dport: 80, flags: SYN, seq: CLIENT_ISN }));
    const [rst] = e.changePublicAddress(ip(NEW)).resets;
    assert.deepEqual(checksumProblems(rst), []);
    assert.equal(rst[33], RST | ACK);
    assert.equal(u32(rst, 28), CLIENT_ISN + 1);
  });

  it("moves pinned mappings (forwards, NAT-PMP/PCP) to the new address with their ports", () => {
    const e = makeEngine({ mode: "interface" });
    const pin = e.pinMapping({
      proto: "tcp",
      inAddr: ip(A),
      inPort: 80,
      outPort: 8080,
      origin: "forward",
      hostQuota: false,
    });
    assert.ok("id" in pin);
    const change = e.changePublicAddress(ip(NEW));
    assert.equal(change.moved, 1);
    assert.equal(e.pinList()[0].outside.addr, NEW);
    assert.equal(e.pinList()[0].outside.port, 8080);
    const syn = run(e, tcp({ src: REMOTE, dst: NEW, sport: 50000, dport: 8080, flags: SYN }));
    assert.equal(syn.verdict, FORWARD);
    assert.equal(u32(syn.out, 16), ip(A));
    assert.equal(u16(syn.out, 22), 80);
    const old = run(e, tcp({ src: REMOTE, dst: P, sport: 50001, dport: 8080, flags: SYN }));
    assert.notEqual(u32(old.out, 16), ip(A), "nothing is forwarded from the old address");
    // The pin still ends its mapping when it goes.
    assert.ok(e.unpin((pin as { id: number }).id));
    e.changePublicAddress(ip(P));
    assert.equal(e.stats().mappings, 0);
  });

  it("without an address, drops what inside hosts send to the Internet; the same address back keeps every flow", () => {
    const e = makeEngine({ mode: "interface" });
    const port = openOutbound(e, A, 40000, REMOTE, 80);
    e.setAddressless(true);
    assert.equal(e.pairedAddress(ip(A)), 0);
    const out = run(e, nextSegment());
    assert.equal(out.verdict, DROP);
    assert.equal(e.lastDrop, D_NO_PUBLIC_ADDRESS);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 53 })).verdict, DROP);
    assert.equal(e.stats().counters.drop_no_public_address, 2);
    // A flap: the same address again. Nothing was flushed.
    const change = e.changePublicAddress(ip(P));
    assert.equal(change.flows, 0);
    assert.equal(change.resets.length, 0);
    assert.equal(e.counters[C_ADDRESS_CHANGES], 0);
    const again = run(e, nextSegment());
    assert.equal(again.verdict, FORWARD);
    assert.equal(u16(again.out, 20), port);
  });

  it("starts without an address (0 in its place) and translates once one comes", () => {
    const e = makeEngine({ mode: "interface", outside: [0] });
    assert.ok(e.addressless);
    assert.equal(run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 53 })).verdict, DROP);
    assert.equal(e.lastDrop, D_NO_PUBLIC_ADDRESS);
    const change = e.changePublicAddress(ip(NEW));
    assert.equal(change.old, 0);
    const out = run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 53 }));
    assert.equal(out.verdict, FORWARD);
    assert.equal(u32(out.out, 12), ip(NEW));
    assert.equal(run(e, udp({ src: REMOTE, dst: "198.51.100.99", sport: 53, dport: 1 })).verdict, FORWARD);
  });

  it("is refused in pool mode", () => {
    const e = makeEngine({ mode: "pool" });
    assert.throws(() => e.changePublicAddress(ip(NEW)), /interface mode/);
    assert.throws(() => e.setAddressless(true), /interface mode/);
  });
});
