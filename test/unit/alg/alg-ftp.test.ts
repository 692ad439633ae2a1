import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_ALG_CONFIG } from "../../../src/alg/config.ts";
import * as C from "../../../src/nat/counters.ts";
import { DROP, FORWARD, type NatEngine, REPLY } from "../../../src/nat/engine.ts";
import { checksum, pseudoHeaderSum, writeU16, writeU32 } from "../../../src/packet/checksum.ts";
import { ACK, checksumProblems, ip, PSH, SYN, tcp, u16, u32 } from "../../helpers/packets.ts";
import { algEngine, CLIENT, fromClient, go, SERVER } from "./alg-helpers.ts";

const A = CLIENT;
const S = SERVER;

const text = (s: string) => Buffer.from(s, "latin1");
const payloadOf = (p: Uint8Array) => Buffer.from(p.subarray(20 + ((p[32] >> 4) << 2))).toString("latin1");

/** Opens a control connection 192.168.0.2:40000 -> S:21; returns the outside port. */
function open(e: NatEngine, cport = 40000): number {
  const syn = go(e, tcp({ src: A, dst: S, sport: cport, dport: 21, flags: SYN, seq: 999 }));
  assert.equal(syn.verdict, FORWARD);
  const outPort = u16(syn.out, 20);
  const sa = go(
    e,
    tcp({ src: S, dst: "198.51.100.2", sport: 21, dport: outPort, flags: SYN | ACK, seq: 4999, ack: 1000 }),
  );
  assert.equal(sa.verdict, FORWARD);
  return outPort;
}

describe("FTP ALG in the engine", () => {
  it("active mode: PORT is rewritten to the outside address and a pinned port; the server's data connection is admitted under APDF; seq/ack corrected afterwards", () => {
    const e = algEngine();
    const outPort = open(e);
    const cmd = "PORT 192,168,0,2,156,65\r\n"; // port 40001
    const r = fromClient(e, 21, 1000, cmd);
    assert.equal(r.verdict, REPLY, "length changed: rebuilt");
    const got = payloadOf(r.out);
    const m = /^PORT 198,51,100,2,(\d+),(\d+)\r\n$/.exec(got);
    assert.ok(m, got);
    const dataOut = Number(m[1]) * 256 + Number(m[2]);
    assert.equal(u32(r.out, 24), 1000, "first rewritten segment keeps its sequence number");
    assert.deepEqual(checksumProblems(r.out), []);
    assert.equal(u16(r.out, 2), r.out.length);
    const delta = got.length - cmd.length;
    const pins = e.pinList();
    assert.equal(pins.length, 1);
    assert.equal(pins[0].origin, "ftp");
    assert.equal(pins[0].inside.port, 40001);
    assert.equal(pins[0].outside.port, dataOut);
    assert.equal(pins[0].remote, S);

    // The next client segment is shifted by the length change; the server's ack is shifted back.
    const next = fromClient(e, 21, 1000 + cmd.length, "RETR x\r\n");
    assert.equal(next.verdict, FORWARD);
    assert.equal(u32(next.out, 24), 1000 + cmd.length + delta);
    assert.deepEqual(checksumProblems(next.out), []);
    const ack = go(
      e,
      tcp({
        src: S,
        dst: "198.51.100.2",
        sport: 21,
        dport: outPort,
        flags: ACK,
        seq: 5000,
        ack: 1000 + got.length + 8,
      }),
    );
    assert.equal(ack.verdict, FORWARD);
    assert.equal(u32(ack.out, 28), 1000 + cmd.length + 8);
    assert.deepEqual(checksumProblems(ack.out), []);

    // The server connects from port 20 to the announced endpoint: admitted once.
    const data = go(e, tcp({ src: S, dst: "198.51.100.2", sport: 20, dport: dataOut, flags: SYN, seq: 7 }));
    assert.equal(data.verdict, FORWARD);
    assert.equal(u32(data.out, 16), ip(A));
    assert.equal(u16(data.out, 22), 40001);
    assert.equal(e.pinList().length, 0, "one-shot");
    const again = go(
      e,
      tcp({ src: S, dst: "198.51.100.2", sport: 2020, dport: dataOut, flags: SYN, seq: 7 }),
    );
    assert.equal(again.verdict, DROP);
    assert.equal(e.counters[C.C_ALG_REWRITES], 1);
  });

  it("a PORT command split across segments is held until complete and sent whole", () => {
    const e = algEngine();
    open(e);
    const a = fromClient(e, 21, 1000, "NOOP\r\nPORT 192,16");
    assert.equal(a.verdict, REPLY);
    assert.equal(payloadOf(a.out), "NOOP\r\n", "the partial command is held");
    assert.deepEqual(checksumProblems(a.out), []);
    assert.equal(e.counters[C.C_ALG_LINES_HELD], 1);
    const b = fromClient(e, 21, 1017, "8,0,2,156,65\r\n");
    assert.equal(b.verdict, REPLY);
    assert.match(payloadOf(b.out), /^PORT 198,51,100,2,\d+,\d+\r\n$/);
    assert.equal(u32(b.out, 24), 1006, "starts where the held bytes began");
    assert.deepEqual(checksumProblems(b.out), []);
    assert.equal(e.pinList().length, 1);
  });

  it("a retransmission of the rewritten segment is rewritten the same way, without a second expectation", () => {
    const e = algEngine();
    open(e);
    const seg = () =>
      tcp({
        src: A,
        dst: S,
        sport: 40000,
        dport: 21,
        flags: ACK | PSH,
        seq: 1000,
        ack: 5000,
        payload: text("EPRT |1|192.168.0.2|40001|\r\n"),
      });
    const first = go(e, seg());
    const again = go(e, seg());
    assert.equal(first.verdict, REPLY);
    assert.match(payloadOf(first.out), /^EPRT \|1\|198\.51\.100\.2\|\d+\|\r\n$/);
    assert.equal(again.verdict, REPLY);
    assert.deepEqual(again.out, first.out);
    assert.equal(e.pinList().length, 1);
    assert.equal(e.counters[C.C_ALG_REPLAYED], 1);
  });

  it("malformed, foreign-address and oversized commands pass unchanged and are counted", () => {
    const e = algEngine();
    open(e);
    let seq = 1000;
    const send = (s: string) => {
      const r = go(
        e,
        tcp({ src: A, dst: S, sport: 40000, dport: 21, flags: ACK | PSH, seq, ack: 5000, payload: text(s) }),
      );
      seq += s.length;
      return r;
    };
    for (const bad of [
      "PORT 192,168,0,2,156\r\n",
      "PORT 192,168,0,2,999,1\r\n",
      "EPRT |1|192.168.0.2|0|\r\n",
      "EPRT x\r\n",
    ]) {
      const r = send(bad);
      assert.equal(r.verdict, FORWARD, bad);
      assert.equal(payloadOf(r.out), bad);
    }
    assert.equal(e.counters[C.C_ALG_MALFORMED], 4);
    const foreign = send("PORT 10,0,0,9,156,65\r\n");
    assert.equal(payloadOf(foreign.out), "PORT 10,0,0,9,156,65\r\n");
    assert.equal(e.counters[C.C_ALG_FOREIGN_ADDRESS], 1);
    const ipv6 = send("EPRT |2|::1|40001|\r\n");
    assert.equal(ipv6.verdict, FORWARD);
    const long = `PORT ${"1,".repeat(600)}\r\n`;
    const big = send(long);
    assert.equal(big.verdict, FORWARD);
    assert.equal(e.counters[C.C_ALG_OVERSIZED], 1);
    assert.equal(e.pinList().length, 0);
  });

  it("SACK edges from the server are shifted back like the acknowledgement", () => {
    const e = algEngine();
    const outPort = open(e);
    const cmd = "PORT 192,168,0,2,156,65\r\n";
    const r = fromClient(e, 21, 1000, cmd);
    const delta = payloadOf(r.out).length - cmd.length;
    // ACK with NOP NOP SACK(2 blocks), built by hand.
    const base = tcp({
      src: S,
      dst: "198.51.100.2",
      sport: 21,
      dport: outPort,
      flags: ACK,
      seq: 5000,
      ack: 1000,
    });
    const opt = new Uint8Array(20);
    opt.set([1, 1, 5, 18]);
    const pkt = new Uint8Array(base.length + 20);
    pkt.set(base.subarray(0, 40));
    pkt.set(opt, 40);
    writeU16(pkt, 2, pkt.length);
    pkt[32] = 10 << 4;
    writeU32(pkt, 44, 1000 + cmd.length + delta + 10);
    writeU32(pkt, 48, 1000 + cmd.length + delta + 20);
    writeU32(pkt, 52, 1000 + cmd.length + delta + 30);
    writeU32(pkt, 56, 1000 + cmd.length + delta + 40);
    writeU16(pkt, 10, 0);
    writeU16(pkt, 10, checksum(pkt, 0, 20));
    writeU16(pkt, 36, 0);
    writeU16(
      pkt,
      36,
      checksum(pkt, 20, pkt.length - 20, pseudoHeaderSum(u32(pkt, 12), u32(pkt, 16), 6, pkt.length - 20)),
    );
    const a = go(e, pkt);
    assert.equal(a.verdict, FORWARD);
    assert.equal(u32(a.out, 28), 1000, "ack before the rewritten segment: unchanged");
    assert.deepEqual(
      [u32(a.out, 44), u32(a.out, 48), u32(a.out, 52), u32(a.out, 56)].map((x) => x - 1000 - cmd.length),
      [10, 20, 30, 40],
    );
    assert.deepEqual(checksumProblems(a.out), []);
  });

  it("a packet with a partial (offloaded) checksum is rebuilt with a full one", () => {
    const e = algEngine();
    open(e);
    const pkt = tcp({
      src: A,
      dst: S,
      sport: 40000,
      dport: 21,
      flags: ACK | PSH,
      seq: 1000,
      ack: 5000,
      payload: text("PORT 192,168,0,2,156,65\r\n"),
    });
    // As virtio-net NEEDS_CSUM delivers it: only the pseudo-header sum, not complemented.
    const psum = pseudoHeaderSum(ip(A), ip(S), 6, pkt.length - 20);
    writeU16(pkt, 36, ((psum & 0xffff) + (psum >>> 16)) & 0xffff);
    const r = go(e, pkt, 1000, true);
    assert.equal(r.verdict, REPLY);
    assert.deepEqual(checksumProblems(r.out), []);
  });

  it("expectations are bounded per flow and lapse after the timeout", () => {
    const e = algEngine({ alg: { ...DEFAULT_ALG_CONFIG, maxExpectationsPerFlow: 2, expectTimeoutSec: 5 } });
    open(e);
    let seq = 1000;
    for (let p = 1; p <= 3; p++) {
      const s = `PORT 192,168,0,2,156,${p}\r\n`;
      go(
        e,
        tcp({ src: A, dst: S, sport: 40000, dport: 21, flags: ACK | PSH, seq, ack: 5000, payload: text(s) }),
      );
      seq += s.length;
    }
    assert.equal(e.pinList().length, 2);
    assert.equal(e.counters[C.C_ALG_EXPECT_REFUSED], 1);
    e.tick(7000);
    assert.equal(e.pinList().length, 0);
  });

  it("an inside server behind a forward: the 227 reply to PASV gets the outside address and a pinned port", () => {
    const e = algEngine();
    const fwd = e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 21, outPort: 21, origin: "forward" });
    assert.ok("id" in fwd);
    const c = "203.0.113.20";
    assert.equal(
      go(e, tcp({ src: c, dst: "198.51.100.2", sport: 50000, dport: 21, flags: SYN, seq: 1 })).verdict,
      FORWARD,
    );
    go(e, tcp({ src: A, dst: c, sport: 21, dport: 50000, flags: SYN | ACK, seq: 100, ack: 2 }));
    const r = go(
      e,
      tcp({
        src: A,
        dst: c,
        sport: 21,
        dport: 50000,
        flags: ACK | PSH,
        seq: 101,
        ack: 2,
        payload: text("227 Entering Passive Mode (192,168,0,2,117,49).\r\n"),
      }),
    );
    assert.equal(r.verdict, REPLY);
    const m = /^227 Entering Passive Mode \(198,51,100,2,(\d+),(\d+)\)\.\r\n$/.exec(payloadOf(r.out));
    assert.ok(m, payloadOf(r.out));
    const port = Number(m[1]) * 256 + Number(m[2]);
    const data = go(e, tcp({ src: c, dst: "198.51.100.2", sport: 50001, dport: port, flags: SYN, seq: 9 }));
    assert.equal(data.verdict, FORWARD);
    assert.equal(u16(data.out, 22), 30001);
  });

  it("flows on other ports are not watched; a disabled ALG watches nothing", () => {
    const e = algEngine({ alg: { ...DEFAULT_ALG_CONFIG, ftp: { enabled: false, ports: [21] } } });
    open(e);
    const r = fromClient(e, 21, 1000, "PORT 192,168,0,2,156,65\r\n");
    assert.equal(r.verdict, FORWARD);
    assert.equal(e.pinList().length, 0);
    const e2 = algEngine({ alg: { ...DEFAULT_ALG_CONFIG, ftp: { enabled: true, ports: [2121] } } });
    const syn = go(e2, tcp({ src: A, dst: S, sport: 40000, dport: 2121, flags: SYN, seq: 999 }));
    go(
      e2,
      tcp({
        src: S,
        dst: "198.51.100.2",
        sport: 2121,
        dport: u16(syn.out, 20),
        flags: SYN | ACK,
        seq: 1,
        ack: 1000,
      }),
    );
    const r2 = go(
      e2,
      tcp({
        src: A,
        dst: S,
        sport: 40000,
        dport: 2121,
        flags: ACK | PSH,
        seq: 1000,
        ack: 2,
        payload: text("PORT 192,168,0,2,156,65\r\n"),
      }),
    );
    assert.equal(r2.verdict, REPLY);
  });
});
