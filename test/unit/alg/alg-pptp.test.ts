// The PPTP ALG (RFC 2637) in the engine: call ids rewritten in the control messages, GRE keys
// translated by the call's flow, two inside hosts calling one server with the same call id.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FORWARD, type NatEngine } from "../../../src/nat/engine.ts";
import { writeU16, writeU32 } from "../../../src/packet/checksum.ts";
import { ACK, checksumProblems, datagram, ip, PSH, SYN, tcp, u16, u32 } from "../../helpers/packets.ts";
import { algEngine, go } from "./alg-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
const S = "203.0.113.10";
const P = "198.51.100.2";

/** A PPTP control message of `type` with the given 16-bit fields after the header, `len` bytes. */
function msg(type: number, len: number, words: number[]): Uint8Array {
  const b = new Uint8Array(len);
  writeU16(b, 0, len);
  writeU16(b, 2, 1);
  writeU32(b, 4, 0x1a2b3c4d);
  writeU16(b, 8, type);
  words.forEach((w, i) => {
    writeU16(b, 12 + 2 * i, w);
  });
  return b;
}
const OCRQ = (callId: number) => msg(7, 168, [callId, 0x0100]);
const OCRP = (callId: number, peer: number) => msg(8, 32, [callId, peer, 0x0100]);
const ICRQ = (callId: number) => msg(9, 220, [callId]);
const ICRP = (callId: number, peer: number) => msg(10, 24, [callId, peer]);
const ICCN = (peer: number) => msg(11, 28, [peer]);
const CCRQ = (callId: number) => msg(12, 16, [callId]);
const CDN = (callId: number) => msg(13, 148, [callId]);
const WEN = (peer: number) => msg(14, 40, [peer]);
const SLI = (peer: number) => msg(15, 24, [peer]);

/** A control connection of `host`:sport to S:1723: its outside port and its sequence numbers. */
function open(e: NatEngine, host: string, sport: number) {
  const syn = go(e, tcp({ src: host, dst: S, sport, dport: 1723, flags: SYN, seq: 999 }));
  assert.equal(syn.verdict, FORWARD);
  const outPort = u16(syn.out, 20);
  go(e, tcp({ src: S, dst: P, sport: 1723, dport: outPort, flags: SYN | ACK, seq: 4999, ack: 1000 }));
  go(e, tcp({ src: host, dst: S, sport, dport: 1723, flags: ACK, seq: 1000, ack: 5000 }));
  return { host, sport, outPort, cseq: 1000, sseq: 5000 };
}
type Conn = ReturnType<typeof open>;

function fromClient(e: NatEngine, c: Conn, payload: Uint8Array) {
  const r = go(
    e,
    tcp({
      src: c.host,
      dst: S,
      sport: c.sport,
      dport: 1723,
      flags: ACK | PSH,
      seq: c.cseq,
      ack: c.sseq,
      payload,
    }),
  );
  c.cseq += payload.length;
  return r;
}

function fromServer(e: NatEngine, c: Conn, payload: Uint8Array) {
  const r = go(
    e,
    tcp({
      src: S,
      dst: P,
      sport: 1723,
      dport: c.outPort,
      flags: ACK | PSH,
      seq: c.sseq,
      ack: c.cseq,
      payload,
    }),
  );
  c.sseq += payload.length;
  return r;
}

/** The 16-bit word at `at` of a TCP segment's payload. */
const word = (seg: Uint8Array, at: number) => u16(seg, 20 + ((seg[32] >> 4) << 2) + at);

/** An enhanced GRE packet (RFC 2637 §4.1) with call id `key`. */
function gre(src: string, dst: string, key: number, body = 4) {
  const p = new Uint8Array(8 + body);
  p.set([0x20, 0x01, 0x88, 0x0b, 0, body, key >> 8, key & 0xff], 0);
  for (let i = 8; i < p.length; i++) p[i] = i;
  return datagram({ src, dst, proto: 47, payload: p });
}

/** Sets up a call of `c` with the client's call id `cid`; the server answers with `sid`. */
function call(e: NatEngine, c: Conn, cid: number, sid: number): number {
  const rq = fromClient(e, c, OCRQ(cid));
  assert.equal(rq.verdict, FORWARD);
  assert.deepEqual(checksumProblems(rq.out), []);
  const outCid = word(rq.out, 12);
  const rp = fromServer(e, c, OCRP(sid, outCid));
  assert.deepEqual(checksumProblems(rp.out), []);
  assert.equal(word(rp.out, 12), sid, "the server's call id is its own");
  assert.equal(word(rp.out, 14), cid, "the peer's call id is the client's own again");
  return outCid;
}

describe("PPTP ALG", () => {
  it("two inside hosts call one server with the same call id: each gets its own outside call id and its GRE", () => {
    const e = algEngine();
    const a = open(e, A, 40000);
    const b = open(e, B, 40001);
    const outA = call(e, a, 1, 0x100);
    const outB = call(e, b, 1, 0x200);
    assert.notEqual(outA, outB);
    assert.equal(outA, 1, "the first keeps its own");
    // GRE out: the source becomes the public address, the key (the server's call id) stays.
    for (const [host, sid] of [
      [A, 0x100],
      [B, 0x200],
    ] as const) {
      const r = go(e, gre(host, S, sid));
      assert.equal(r.verdict, FORWARD);
      assert.equal(u32(r.out, 12), ip(P));
      assert.equal(u16(r.out, 26), sid);
      assert.deepEqual(checksumProblems(r.out), []);
    }
    // GRE in: by our call id, to the right host with its own call id.
    for (const [outCid, host] of [
      [outA, A],
      [outB, B],
    ] as const) {
      const r = go(e, gre(S, P, outCid));
      assert.equal(r.verdict, FORWARD);
      assert.equal(u32(r.out, 16), ip(host));
      assert.equal(u16(r.out, 26), 1);
      assert.deepEqual(checksumProblems(r.out), []);
    }
    const grey = e.flows().filter((f) => f.protocol === "gre");
    assert.equal(grey.length, 2);
    const c = e.stats().counters;
    assert.equal(c.alg_pptp_expectations, 2);
    assert.ok(c.alg_pptp_rewrites >= 1);
    assert.equal(c.drop_protocol_remote_taken, 0);
  });

  it("the other messages that carry the client's call id are rewritten both ways", () => {
    const e = algEngine();
    const a = open(e, A, 40000);
    const b = open(e, B, 40001);
    call(e, a, 7, 0x100);
    const outB = call(e, b, 7, 0x200);
    assert.notEqual(outB, 7);
    for (const [m, at] of [
      [ICCN(outB), 12],
      [WEN(outB), 12],
      [SLI(outB), 12],
      [CDN(outB), 12],
    ] as const) {
      const r = fromServer(e, b, m);
      assert.equal(word(r.out, at), 7, `type ${m[9]}`);
      assert.deepEqual(checksumProblems(r.out), []);
    }
    const cc = fromClient(e, b, CCRQ(7));
    assert.equal(word(cc.out, 12), outB);
    // A Call-Disconnect-Notify naming the server's own call id is left alone.
    assert.equal(word(fromServer(e, b, CDN(0x200)).out, 12), 0x200);
  });

  it("an incoming call (the server calls the client): the reply's call id is rewritten, GRE flows at once", () => {
    const e = algEngine();
    const a = open(e, A, 40000);
    const b = open(e, B, 40001);
    call(e, a, 3, 0x100);
    assert.equal(word(fromServer(e, b, ICRQ(0x300)).out, 12), 0x300);
    const rp = fromClient(e, b, ICRP(3, 0x300));
    const outB = word(rp.out, 12);
    assert.notEqual(outB, 3);
    assert.equal(word(rp.out, 14), 0x300);
    assert.equal(u32(go(e, gre(B, S, 0x300)).out, 12), ip(P));
    const back = go(e, gre(S, P, outB));
    assert.equal(u32(back.out, 16), ip(B));
    assert.equal(u16(back.out, 26), 3);
  });

  it("several messages in one segment are each handled; a retransmitted request keeps its call", () => {
    const e = algEngine();
    const a = open(e, A, 40000);
    const b = open(e, B, 40001);
    call(e, a, 1, 0x100);
    const both = new Uint8Array([...msg(1, 156, [1]), ...OCRQ(1)]);
    const r = fromClient(e, b, both);
    const outB = word(r.out, 156 + 12);
    assert.notEqual(outB, 1);
    // The same request again (a retransmission): the same outside call id, no second flow.
    b.cseq -= 168;
    const again = fromClient(e, b, OCRQ(1));
    assert.equal(word(again.out, 12), outB);
    assert.equal(e.flows().filter((f) => f.protocol === "gre").length, 2);
  });

  it("truncated or hostile messages never throw: they pass unchanged and are counted", () => {
    const e = algEngine();
    const a = open(e, A, 40000);
    const bad: Uint8Array[] = [
      OCRQ(1).subarray(0, 10), // shorter than the header
      OCRQ(1).subarray(0, 100), // cut: the length says 168
      (() => {
        const m = OCRQ(1);
        m[4] = 0;
        return m;
      })(), // no magic cookie
      (() => {
        const m = OCRQ(1);
        writeU16(m, 0, 4);
        return m;
      })(), // a length below the header's
      msg(7, 13, []), // an Outgoing-Call-Request too short for its call id
      new Uint8Array(64).fill(0xff),
    ];
    for (const m of bad) {
      const r = fromClient(e, a, m);
      assert.equal(r.verdict, FORWARD);
      assert.deepEqual(r.out.subarray(r.out.length - m.length), m, "passed unchanged");
    }
    // A reply for a call nobody made.
    const r = fromServer(e, a, OCRP(5, 999));
    assert.equal(word(r.out, 14), 999);
    const c = e.stats().counters;
    assert.equal(c.alg_pptp_malformed, bad.length + 1);
    assert.equal(c.alg_pptp_errors, 0);
    assert.equal(e.flows().filter((f) => f.protocol === "gre").length, 0);
  });

  it("random payloads on the control connection never throw", () => {
    const e = algEngine();
    const a = open(e, A, 40000);
    let seed = 12345;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 24;
    };
    for (let i = 0; i < 300; i++) {
      const n = 1 + (rnd() % 200);
      const p = new Uint8Array(n).map(rnd);
      if (i % 3 === 0 && n >= 12) p.set([0, n, 0, 1, 0x1a, 0x2b, 0x3c, 0x4d, 0, 7 + (rnd() % 9)], 0);
      if (i % 2 === 0) fromClient(e, a, p);
      else fromServer(e, a, p);
    }
    assert.equal(e.stats().counters.alg_pptp_errors, 0);
  });
});
