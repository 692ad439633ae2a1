import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_ALG_CONFIG } from "../../../src/alg/config.ts";
import { DEFAULT_INTERFACE_PORTS } from "../../../src/nat/config.ts";
import * as C from "../../../src/nat/counters.ts";
import { DROP, FORWARD, type NatEngine, REPLY } from "../../../src/nat/engine.ts";
import { ACK, checksumProblems, icmpError, ip, PSH, SYN, tcp, u16, u32 } from "../../helpers/packets.ts";
import { algEngine, CLIENT, fromClient, go, SERVER } from "./alg-helpers.ts";

const A = CLIENT;
const S = SERVER;
const P = "198.51.100.2";
const text = (s: string) => Buffer.from(s, "latin1");
/** Interface mode's range: the offer's port 500 is rewritten to a longer one (61000-65534). */
const HIGH_PORTS = {
  tcp: DEFAULT_INTERFACE_PORTS,
  udp: DEFAULT_INTERFACE_PORTS,
  icmp: DEFAULT_INTERFACE_PORTS,
};
const payloadOf = (p: Uint8Array) => Buffer.from(p.subarray(20 + ((p[32] >> 4) << 2))).toString("latin1");

function open(e: NatEngine, dport: number): number {
  const syn = go(e, tcp({ src: A, dst: S, sport: 40000, dport, flags: SYN, seq: 999 }));
  const outPort = u16(syn.out, 20);
  go(e, tcp({ src: S, dst: P, sport: dport, dport: outPort, flags: SYN | ACK, seq: 4999, ack: 1000 }));
  return outPort;
}

/** The packet quoted in an ICMP error (outer IPv4 header of 20 bytes, ICMP header of 8). */
const quotedIn = (icmp: Uint8Array) => icmp.subarray(28);

/** A segment of the server's stream to the client's outside port. */
const fromServer = (e: NatEngine, outPort: number, seq: number, ack: number, payload: string) =>
  go(
    e,
    tcp({ src: S, dst: P, sport: 6667, dport: outPort, flags: ACK | PSH, seq, ack, payload: text(payload) }),
  );

/**
 * An IRC connection where the client offers a DCC SEND (its address and port rewritten) and the
 * server answers with a RESUME naming the outside port, rewritten shorter for the client.
 */
function dccResume(e: NatEngine) {
  const outPort = open(e, 6667);
  const offer = `PRIVMSG bob :\x01DCC SEND f ${ip(A) >>> 0} 500 99\x01\r\n`;
  const o = fromClient(e, 6667, 1000, offer);
  assert.equal(o.verdict, REPLY);
  const dccPort = Number(/ (\d+) 99\W/.exec(payloadOf(o.out))?.[1]);
  assert.ok(dccPort >= 61000);
  const resume = `:bob!b@h PRIVMSG alice :\x01DCC RESUME f ${dccPort} 10\x01\r\n`;
  const r = fromServer(e, outPort, 5000, 1000 + payloadOf(o.out).length, resume);
  return { outPort, offer, resume, r };
}

describe("ALG stream handling", () => {
  it("an ICMP error from outside quoting a segment after a lengthening rewrite gets the client's own sequence number back (RFC 5927)", () => {
    for (const quoteLen of [undefined, 28]) {
      const e = algEngine();
      open(e, 21);
      const cmd = "PORT 192,168,0,2,156,65\r\n";
      const r = fromClient(e, 21, 1000, cmd);
      assert.equal(r.verdict, REPLY);
      const delta = payloadOf(r.out).length - cmd.length;
      assert.notEqual(delta, 0);
      const clientSeq = 1000 + cmd.length;
      const next = fromClient(e, 21, clientSeq, "LIST\r\n");
      assert.equal(u32(next.out, 24), clientSeq + delta, "the server sees the shifted number");
      // A router on the way cannot forward it: fragmentation needed, quoting the segment as sent.
      const err = icmpError({
        from: "203.0.113.1",
        to: P,
        type: 3,
        code: 4,
        mtu: 1400,
        quoted: next.out,
        quoteLen,
      });
      const back = go(e, err);
      assert.equal(back.verdict, FORWARD);
      const q = quotedIn(back.out);
      assert.equal(u32(q, 12), ip(A), "quoted source: the inside host");
      assert.equal(u16(q, 20), 40000);
      assert.equal(u32(q, 24), clientSeq, "quoted sequence number: the client's own");
      assert.deepEqual(checksumProblems(back.out), []);
      if (quoteLen === undefined)
        assert.deepEqual(checksumProblems(q), [], "the whole quoted segment checks");
    }
  });

  it("an ICMP error from the inside host quoting a segment after a shortening inbound rewrite gets the server's number back", () => {
    const e = algEngine({ ports: HIGH_PORTS });
    const { outPort, resume, r } = dccResume(e);
    const shrink = resume.length - payloadOf(r.out).length;
    assert.ok(shrink > 0);
    const serverSeq = 5000 + resume.length;
    const next = fromServer(e, outPort, serverSeq, 1000, "PING :x\r\n");
    assert.equal(u32(next.out, 24), serverSeq - shrink);
    // The inside host answers that segment with an ICMP error quoting it as it arrived.
    const out = go(e, icmpError({ from: A, to: S, type: 3, code: 3, quoted: next.out }));
    assert.equal(out.verdict, FORWARD);
    const q = quotedIn(out.out);
    assert.equal(u32(q, 16), ip(P), "quoted destination: the public address");
    assert.equal(u32(q, 24), serverSeq, "quoted sequence number: the server's own");
    assert.deepEqual(checksumProblems(out.out), []);
    assert.deepEqual(checksumProblems(q), []);
  });

  it("an inbound rewrite that shortens the stream (IRC DCC RESUME) shifts the server's sequence numbers and the client's acks", () => {
    const e = algEngine({ ports: HIGH_PORTS });
    const { outPort, offer, resume, r } = dccResume(e);
    assert.equal(r.verdict, REPLY);
    assert.equal(payloadOf(r.out), ":bob!b@h PRIVMSG alice :\x01DCC RESUME f 500 10\x01\r\n");
    assert.equal(u32(r.out, 28), 1000 + offer.length, "its ack is shifted back into the client's numbering");
    assert.deepEqual(checksumProblems(r.out), []);
    const shrink = resume.length - payloadOf(r.out).length;
    assert.equal(shrink, 2);
    const next = go(
      e,
      tcp({
        src: S,
        dst: P,
        sport: 6667,
        dport: outPort,
        flags: ACK | PSH,
        seq: 5000 + resume.length,
        ack: 1000,
        payload: text("PING :x\r\n"),
      }),
    );
    assert.equal(next.verdict, FORWARD);
    assert.equal(u32(next.out, 24), 5000 + resume.length - shrink);
    const ack = go(
      e,
      tcp({
        src: A,
        dst: S,
        sport: 40000,
        dport: 6667,
        flags: ACK,
        seq: 1000 + offer.length,
        ack: 5000 + resume.length - shrink + 9,
      }),
    );
    assert.equal(
      u32(ack.out, 28),
      5000 + resume.length + 9,
      "the client's ack is mapped to the server's numbering",
    );
    assert.deepEqual(checksumProblems(ack.out), []);
  });

  it("a same-length rewrite is patched in place (FORWARD, checksum kept right; a retransmission gets the same bytes)", () => {
    for (const partial of [false, true]) {
      const e = algEngine();
      open(e, 6667);
      // 192.168.0.2 and 198.51.100.2 are both 10-digit numbers; port 61234 -> 61xxx: same length.
      const offer = `PRIVMSG bob :\x01DCC SEND f ${ip(A) >>> 0} 61234 99\x01\r\n`;
      const seg = () =>
        tcp({
          src: A,
          dst: S,
          sport: 40000,
          dport: 6667,
          flags: ACK | PSH,
          seq: 1000,
          ack: 5000,
          payload: text(offer),
        });
      const r = go(e, seg(), 1000, partial);
      assert.equal(r.verdict, FORWARD);
      const got = payloadOf(r.out);
      assert.equal(got.length, offer.length);
      assert.match(got, new RegExp(`DCC SEND f ${ip(P) >>> 0} \\d{5} 99`));
      if (!partial) assert.deepEqual(checksumProblems(r.out), []);
      const again = go(e, seg(), 1000, partial);
      assert.equal(payloadOf(again.out), got);
      if (!partial) assert.deepEqual(checksumProblems(again.out), []);
    }
  });

  it("an RTSP Transport header split over three segments is reassembled and rewritten", () => {
    const e = algEngine();
    open(e, 554);
    const parts = [
      "SETUP rtsp://x/a RTSP/1.0\r\nCSeq: 1\r\nTransp",
      "ort: RTP/AVP;client_po",
      "rt=5000-5001\r\n\r\n",
    ];
    let seq = 1000;
    const outs: string[] = [];
    for (const p of parts) {
      const r = go(
        e,
        tcp({ src: A, dst: S, sport: 40000, dport: 554, flags: ACK | PSH, seq, ack: 5000, payload: text(p) }),
      );
      assert.notEqual(r.verdict, DROP);
      assert.deepEqual(checksumProblems(r.out), []);
      outs.push(payloadOf(r.out));
      seq += p.length;
    }
    assert.equal(outs[0], "SETUP rtsp://x/a RTSP/1.0\r\nCSeq: 1\r\n");
    assert.equal(outs[1], "", "still incomplete: held");
    assert.match(outs[2], /^Transport: RTP\/AVP;client_port=(\d+)-(\d+)\r\n\r\n$/);
    assert.equal(e.pinList().filter((p) => p.origin === "rtsp").length, 2);
  });

  it("a held partial line is let go when the sender retransmits it (never a stall)", () => {
    const e = algEngine();
    open(e, 21);
    const seg = () => fromClient(e, 21, 1000, "PORT 192,168");
    const first = seg();
    assert.equal(payloadOf(first.out), "");
    const again = seg();
    assert.equal(payloadOf(again.out), "PORT 192,168");
    assert.equal(u32(again.out, 24), 1000);
    assert.deepEqual(checksumProblems(again.out), []);
  });

  it("a bare FIN after a held partial line carries the held bytes out with it", () => {
    const e = algEngine();
    open(e, 21);
    const held = fromClient(e, 21, 1000, "PORT 192,168");
    assert.equal(payloadOf(held.out), "");
    const fin = go(
      e,
      tcp({ src: A, dst: S, sport: 40000, dport: 21, flags: ACK | 0x01, seq: 1012, ack: 5000 }),
    );
    assert.equal(fin.verdict, REPLY);
    assert.equal(payloadOf(fin.out), "PORT 192,168");
    assert.equal(u32(fin.out, 24), 1000);
    assert.equal(fin.out[33] & 0x01, 1, "FIN kept");
    assert.deepEqual(checksumProblems(fin.out), []);
  });

  it("a burst of full-sized segments is never held (IRC lines split at every segment boundary pass in place)", () => {
    const e = algEngine();
    const outPort = open(e, 6667);
    let stream = "";
    for (let i = 0; stream.length < 20000; i++)
      stream += `:irc.test 372 alice :- message of the day line ${i}\r\n`;
    const got = new Uint8Array(stream.length);
    for (let at = 0; at < stream.length; at += 1448) {
      const chunk = stream.slice(at, at + 1448);
      const r = go(
        e,
        tcp({
          src: S,
          dst: P,
          sport: 6667,
          dport: outPort,
          flags: ACK,
          seq: 5000 + at,
          ack: 1000,
          payload: text(chunk),
        }),
      );
      assert.equal(r.verdict, FORWARD, `segment at ${at}`);
      got.set(r.out.subarray(40), u32(r.out, 24) - 5000);
    }
    assert.equal(Buffer.from(got).toString("latin1"), stream);
    assert.equal(e.counters[C.C_ALG_LINES_HELD], 0);
  });

  it("held bytes in front of a full-sized segment: what fits is sent, the rest comes back as a retransmission", () => {
    const e = algEngine();
    open(e, 21);
    const first = "PORT 192,168";
    const rest = `,0,2,156,65\r\n${"NOOP\r\n".repeat(300)}`;
    const a = fromClient(e, 21, 1000, first);
    assert.equal(payloadOf(a.out), "");
    const big = rest.slice(0, 1448);
    const b = go(
      e,
      tcp({
        src: A,
        dst: S,
        sport: 40000,
        dport: 21,
        flags: ACK,
        seq: 1000 + first.length,
        ack: 5000,
        payload: text(big),
      }),
    );
    assert.equal(b.verdict, REPLY);
    assert.ok(b.out.length <= 1500);
    assert.equal(u32(b.out, 24), 1000);
    assert.deepEqual(checksumProblems(b.out), []);
    const sent = payloadOf(b.out);
    const m = /^PORT 198,51,100,2,\d+,\d+\r\n/.exec(sent);
    assert.ok(m, sent.slice(0, 40));
    const input = first + big;
    const grew = m[0].length - "PORT 192,168,0,2,156,65\r\n".length;
    const consumed = sent.length - grew;
    assert.equal(sent.slice(m[0].length), input.slice(m[0].length - grew, consumed));
    // The sender resends from where the receiver's ack points (mapped back): it passes on, shifted.
    const again = input.slice(consumed);
    const c = go(
      e,
      tcp({
        src: A,
        dst: S,
        sport: 40000,
        dport: 21,
        flags: ACK,
        seq: 1000 + consumed,
        ack: 5000,
        payload: text(again),
      }),
    );
    assert.notEqual(c.verdict, DROP);
    assert.equal(payloadOf(c.out), again);
    assert.equal(u32(c.out, 24), 1000 + consumed + grew);
  });

  it("after a gap (bytes lost before the gateway) the ALG picks the stream up again", () => {
    const e = algEngine();
    open(e, 21);
    const lost = "NOOP\r\n";
    const r = fromClient(e, 21, 1000 + lost.length, "PORT 192,168,0,2,156,65\r\n");
    assert.equal(r.verdict, REPLY);
    assert.match(payloadOf(r.out), /^PORT 198,51,100,2,/);
    const late = fromClient(e, 21, 1000, lost);
    assert.equal(late.verdict, FORWARD);
    assert.equal(u32(late.out, 24), 1000);
  });

  it("a rewrite that would not fit in one packet: what fits goes, the rest is rewritten when the sender resends it", () => {
    const e = algEngine();
    open(e, 21);
    const big = `${"NOOP\r\n".repeat(245)}PORT 192,168,0,2,156,65\r\n`; // 1495 bytes of payload
    const r = fromClient(e, 21, 1000, big);
    assert.equal(r.verdict, REPLY);
    assert.ok(r.out.length <= 1500);
    const sent = payloadOf(r.out);
    assert.equal(sent, big.slice(0, sent.length));
    assert.ok(!sent.includes("PORT"), "cut before the command that grows");
    assert.equal(e.counters[C.C_ALG_SEGMENTS_CUT], 1);
    const again = fromClient(e, 21, 1000 + sent.length, big.slice(sent.length));
    assert.equal(again.verdict, REPLY);
    assert.match(payloadOf(again.out), /PORT 198,51,100,2,\d+,\d+\r\n$/);
    assert.equal(u32(again.out, 24), 1000 + sent.length);
    assert.equal(e.pinList().length, 1, "one expectation for the command seen twice");
  });

  it("disabled: no flow is watched, no state is kept", () => {
    const e = algEngine({ alg: { ...DEFAULT_ALG_CONFIG, rtsp: { enabled: false, ports: [554] } } });
    open(e, 554);
    const r = fromClient(e, 554, 1000, "Transport: RTP/AVP;client_port=5000-5001\r\n");
    assert.equal(r.verdict, FORWARD);
    assert.equal(e.pinList().length, 0);
  });

  it("fuzz: random segments (overlaps, gaps, retransmissions, command fragments) never throw and always carry valid checksums", () => {
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const words = [
      "PORT 192,168,0,2,156,65\r\n",
      "EPRT |1|192.168.0.2|40001|\r\n",
      "NOOP\r\n",
      "PORT 1,2\r\n",
      "\r\n",
      "x".repeat(1100),
      "227 (192,168,0,2,1,2)\r\n",
    ];
    for (const port of [21, 6667, 554]) {
      const e = algEngine({ alg: { ...DEFAULT_ALG_CONFIG, maxExpectations: 50 } });
      const outPort = open(e, port);
      let stream = "";
      for (let i = 0; i < 300; i++) stream += words[rnd(words.length)];
      let pos = 0;
      for (let i = 0; i < 600; i++) {
        const back = rnd(4) === 0 ? rnd(40) : 0;
        const start = Math.max(0, pos - back + (rnd(10) === 0 ? rnd(30) : 0));
        const len = 1 + rnd(200);
        const chunk = stream.slice(start, start + len);
        if (chunk.length === 0) break;
        const r = go(
          e,
          tcp({
            src: A,
            dst: S,
            sport: 40000,
            dport: port,
            flags: ACK | PSH,
            seq: 1000 + start,
            ack: 5000,
            payload: text(chunk),
          }),
          1000 + i,
          rnd(2) === 0,
        );
        assert.notEqual(r.verdict, DROP);
        if (r.verdict === REPLY) assert.deepEqual(checksumProblems(r.out), [], `segment ${i}`);
        const back2 = go(
          e,
          tcp({
            src: S,
            dst: P,
            sport: port,
            dport: outPort,
            flags: ACK,
            seq: 5000,
            ack: 1000 + start + rnd(300),
          }),
          1000 + i,
        );
        assert.equal(back2.verdict, FORWARD);
        assert.deepEqual(checksumProblems(back2.out), []);
        pos = Math.max(pos, start + chunk.length);
      }
      assert.equal(e.counters[C.C_ALG_ERRORS], 0, "no parser threw");
    }
  });
});
