// TCP tracking: the handshake (established only by the ACK of the SYN-ACK), and resets believed
// only inside the receiver's window (RFC 5961 §3), with window scaling and ALG-resized streams.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as C from "../../../src/nat/counters.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { ACK, ip, PSH, RST, SYN, tcp, u32 } from "../../helpers/packets.ts";
import { algEngine, CLIENT, fromClient, go, SERVER } from "../alg/alg-helpers.ts";
import { makeEngine, P, REMOTE } from "./engine-helpers.ts";
import { Conn, wscale } from "./tcp-helpers.ts";

const A = "192.168.0.2";
const ATTACKER = "203.0.113.66";

/** An established outbound connection: the client sent 100 bytes, the server 50, all acknowledged. */
function established() {
  const e = makeEngine();
  const c = new Conn(e, A, 40000, REMOTE, 80);
  c.out({ flags: SYN, seq: 1000 });
  c.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
  c.out({ flags: ACK, seq: 1001, ack: 5001 });
  c.out({ flags: ACK | PSH, seq: 1001, ack: 5001, payload: 100 });
  c.in({ flags: ACK | PSH, seq: 5001, ack: 1101, payload: 50 });
  c.out({ flags: ACK, seq: 1101, ack: 5051 });
  assert.equal(c.state(), "established");
  return { e, c };
}

/** Data still goes both ways on the connection. */
function carriesData(c: Conn): void {
  assert.equal(c.out({ flags: ACK | PSH, seq: 1101, ack: 5051, payload: 10 }).verdict, FORWARD);
  assert.equal(c.in({ flags: ACK | PSH, seq: 5051, ack: 1111, payload: 10 }).verdict, FORWARD);
}

describe("TCP handshake", () => {
  it("a connection is established only by the ACK of the SYN-ACK (the third packet), and counted", () => {
    const e = makeEngine();
    const c = new Conn(e, A, 40000, REMOTE, 80);
    c.out({ flags: SYN, seq: 1000 });
    assert.equal(c.state(), "syn-sent");
    c.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    assert.equal(c.state(), "syn-received");
    assert.equal(e.counters[C.C_TCP_HANDSHAKES], 0);
    c.out({ flags: ACK, seq: 1001, ack: 5001 });
    assert.equal(c.state(), "established");
    assert.equal(e.counters[C.C_TCP_HANDSHAKES], 1);
  });

  it("a third ACK that does not acknowledge the SYN-ACK, or a SYN-ACK that does not acknowledge the SYN, establishes nothing", () => {
    // The SYN flood's case: the spoofer never sees the server's sequence number.
    const e = makeEngine();
    e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
    const c = new Conn(e, A, 80, ATTACKER, 5555, 8080);
    assert.equal(c.in({ flags: SYN, seq: 1000 }).verdict, FORWARD);
    c.out({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    assert.equal(
      c.in({ flags: ACK, seq: 1001, ack: 31337 }).verdict,
      FORWARD,
      "passed on, for the server to refuse",
    );
    assert.equal(c.state(), "syn-received");
    c.in({ flags: ACK, seq: 1001, ack: 5001 });
    assert.equal(c.state(), "established");

    const d = new Conn(e, A, 40001, REMOTE, 80);
    d.out({ flags: SYN, seq: 1000 });
    d.in({ flags: SYN | ACK, seq: 5000, ack: 7777 });
    assert.equal(d.state(), "syn-sent", "a SYN-ACK for another SYN teaches nothing");
    d.out({ flags: ACK, seq: 1001, ack: 5001 });
    assert.equal(d.state(), "syn-sent");
  });

  it("SYN and SYN-ACK retransmissions change nothing; a SYN with a new ISN starts the stream over", () => {
    const e = makeEngine();
    const c = new Conn(e, A, 40000, REMOTE, 80);
    c.out({ flags: SYN, seq: 1000 });
    c.out({ flags: SYN, seq: 1000 });
    assert.equal(c.state(), "syn-sent");
    c.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    c.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    assert.equal(c.state(), "syn-received");
    c.out({ flags: ACK, seq: 1001, ack: 5001 });
    assert.equal(c.state(), "established");
    assert.equal(e.counters[C.C_TCP_HANDSHAKES], 1);

    const d = new Conn(e, A, 40001, REMOTE, 80);
    d.out({ flags: SYN, seq: 1000 });
    d.out({ flags: SYN, seq: 3000 });
    d.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    assert.equal(d.state(), "syn-sent", "the answer to the abandoned SYN");
    d.in({ flags: SYN | ACK, seq: 5000, ack: 3001 });
    d.out({ flags: ACK, seq: 3001, ack: 5001 });
    assert.equal(d.state(), "established");
  });

  it("an inbound connection that never completes goes after the half-open timeout; a completed one stays", () => {
    const e = makeEngine();
    e.pinMapping({ proto: "tcp", inAddr: ip(A), inPort: 80, outPort: 8080, origin: "forward" });
    const half = new Conn(e, A, 80, ATTACKER, 5555, 8080);
    half.in({ flags: SYN, seq: 1000 });
    half.out({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    // The server retransmits its SYN-ACK: the idle time counts from there.
    half.nowMs = 4000;
    half.out({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    const full = new Conn(e, A, 80, REMOTE, 6666, 8080);
    full.in({ flags: SYN, seq: 1000 });
    full.out({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    full.in({ flags: ACK, seq: 1001, ack: 5001 });
    e.tick(4000 + 59_000);
    assert.equal(half.state(), "syn-received");
    e.tick(4000 + 61_000);
    assert.equal(half.state(), undefined, "60 s idle, half open");
    assert.equal(full.state(), "established");
    assert.equal(e.hostTable.halfOpen[e.hostTable.find(ip(A))], 0);
  });
});

describe("TCP resets (RFC 5961 §3)", () => {
  it("a reset far outside the window is dropped and counted; the connection keeps its state and carries data", () => {
    const { e, c } = established();
    const r = c.in({ flags: RST, seq: 5051 + 10_000_000 });
    assert.equal(r.verdict, DROP);
    assert.equal(e.lastDrop, C.D_TCP_RST_OUT_OF_WINDOW);
    assert.equal(e.counters[C.D_TCP_RST_OUT_OF_WINDOW], 1);
    assert.equal(c.state(), "established");
    carriesData(c);
    // One just below what the client has acknowledged is as blind.
    assert.equal(c.in({ flags: RST, seq: 5000 }).verdict, DROP);
    assert.equal(c.state(), "established");
  });

  it("a reset at the sender's next sequence number closes the connection", () => {
    const { c } = established();
    assert.equal(c.in({ flags: RST, seq: 5051 }).verdict, FORWARD);
    assert.equal(c.state(), "closed");
  });

  it("a reset in the window but not exact goes on without closing (the receiver challenges it); the exact one that follows closes", () => {
    const { c } = established();
    assert.equal(c.in({ flags: RST, seq: 5051 + 1000 }).verdict, FORWARD);
    assert.equal(c.state(), "established");
    // The client's challenge ACK, then the server's reset at the number it gives.
    c.out({ flags: ACK, seq: 1101, ack: 5051 });
    assert.equal(c.in({ flags: RST, seq: 5051 }).verdict, FORWARD);
    assert.equal(c.state(), "closed");
  });

  it("before the window is known: a refusal must acknowledge the SYN, the opener's own reset must carry its numbers", () => {
    const e = makeEngine();
    const refused = new Conn(e, A, 40000, REMOTE, 80);
    refused.out({ flags: SYN, seq: 1000 });
    assert.equal(refused.in({ flags: RST | ACK, seq: 0, ack: 5555 }).verdict, DROP);
    assert.equal(refused.in({ flags: RST, seq: 0 }).verdict, DROP, "RFC 9293 §3.10.7.3: no ACK, no reset");
    assert.equal(refused.state(), "syn-sent");
    assert.equal(refused.in({ flags: RST | ACK, seq: 0, ack: 1001 }).verdict, FORWARD);
    assert.equal(refused.state(), "closed");

    const aborted = new Conn(e, A, 40001, REMOTE, 80);
    aborted.out({ flags: SYN, seq: 1000 });
    assert.equal(aborted.out({ flags: RST, seq: 77_777 }).verdict, DROP);
    assert.equal(aborted.out({ flags: RST, seq: 1001 }).verdict, FORWARD);
    assert.equal(aborted.state(), "closed");

    // After the SYN-ACK, before the third packet: the server's window is known, the client's not.
    const half = new Conn(e, A, 40002, REMOTE, 80);
    half.out({ flags: SYN, seq: 1000 });
    half.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    assert.equal(half.in({ flags: RST, seq: 9000 }).verdict, DROP);
    assert.equal(half.in({ flags: RST, seq: 5001 }).verdict, FORWARD);
    assert.equal(half.state(), "closed");
  });

  it("in SYN-SENT, the opener's reset of a segment that does not acknowledge its SYN goes through at that segment's ACK number, closing nothing", () => {
    // RFC 9293 §3.10.7.3: an unacceptable ACK in SYN-SENT is answered <SEQ=SEG.ACK><CTL=RST>; the
    // reset is for the other end's stale connection (a TIME-WAIT answering the SYN with its ACK).
    for (const stray of [
      { flags: ACK, seq: 777, ack: 424_242 },
      { flags: SYN | ACK, seq: 777, ack: 424_242 },
    ]) {
      const e = makeEngine();
      const c = new Conn(e, A, 40000, REMOTE, 80);
      c.out({ flags: SYN, seq: 1000 });
      assert.equal(c.in(stray).verdict, FORWARD, "passed on, for the client to answer");
      assert.equal(c.out({ flags: RST, seq: 424_243 }).verdict, DROP, "another number is still blind");
      assert.equal(c.out({ flags: RST, seq: 424_242 }).verdict, FORWARD);
      assert.equal(c.state(), "syn-sent");
      c.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
      c.out({ flags: ACK, seq: 1001, ack: 5001 });
      assert.equal(c.state(), "established");
      assert.equal(c.out({ flags: RST, seq: 424_242 }).verdict, DROP, "established: blind again");
    }
  });

  it("the window is scaled as the SYNs' window scale options say (RFC 7323), only when both offer it", () => {
    const e = makeEngine();
    const scaled = new Conn(e, A, 40000, REMOTE, 80);
    scaled.out({ flags: SYN, seq: 1000, tcpOptions: wscale(7) });
    scaled.in({ flags: SYN | ACK, seq: 5000, ack: 1001, tcpOptions: wscale(7) });
    scaled.out({ flags: ACK, seq: 1001, ack: 5001, window: 1000 }); // 128,000 bytes
    assert.equal(scaled.in({ flags: RST, seq: 5001 + 100_000 }).verdict, FORWARD);
    assert.equal(scaled.state(), "established");
    assert.equal(scaled.in({ flags: RST, seq: 5001 + 200_000 }).verdict, DROP);

    const unscaled = new Conn(e, A, 40001, REMOTE, 80);
    unscaled.out({ flags: SYN, seq: 1000, tcpOptions: wscale(7) });
    unscaled.in({ flags: SYN | ACK, seq: 5000, ack: 1001 });
    unscaled.out({ flags: ACK, seq: 1001, ack: 5001, window: 1000 });
    assert.equal(unscaled.in({ flags: RST, seq: 5001 + 100_000 }).verdict, DROP);
    assert.equal(unscaled.in({ flags: RST, seq: 5001 + 500 }).verdict, FORWARD);
    assert.equal(unscaled.state(), "established");
  });

  it("a forged segment outside the window teaches nothing: a reset at its end is still blind", () => {
    const { e, c } = established();
    const far = 5051 + 50_000_000;
    assert.equal(
      c.in({ flags: ACK | PSH, seq: far, ack: 1101, window: 65535, payload: 100 }).verdict,
      FORWARD,
    );
    assert.equal(c.in({ flags: RST, seq: far + 100 }).verdict, DROP);
    assert.equal(e.lastDrop, C.D_TCP_RST_OUT_OF_WINDOW);
    carriesData(c);
  });

  it("after an ALG lengthened the client's stream, resets are judged in the client's own numbering", () => {
    const e = algEngine();
    const syn = go(e, tcp({ src: CLIENT, dst: SERVER, sport: 40000, dport: 21, flags: SYN, seq: 999 }));
    const outPort = (syn.out[20] << 8) | syn.out[21];
    const server = (flags: number, seq: number, ack: number) =>
      go(e, tcp({ src: SERVER, dst: P, sport: 21, dport: outPort, flags, seq, ack }));
    server(SYN | ACK, 4999, 1000);
    const cmd = "PORT 192,168,0,2,156,65\r\n";
    const r = fromClient(e, 21, 1000, cmd);
    const delta = r.out.length - 40 - cmd.length;
    assert.notEqual(delta, 0, "the rewrite changed the length");
    const clientNext = 1000 + cmd.length;
    // The server acknowledges everything, in the numbering it saw.
    server(ACK, 5000, clientNext + delta);
    const client = (seq: number) =>
      go(e, tcp({ src: CLIENT, dst: SERVER, sport: 40000, dport: 21, flags: RST | ACK, seq, ack: 5000 }));
    assert.equal(client(clientNext - 5).verdict, DROP, "below what the server has acknowledged");
    const ok = client(clientNext);
    assert.equal(ok.verdict, FORWARD);
    assert.equal(u32(ok.out, 24), clientNext + delta, "the server sees it in its numbering");
    assert.equal(e.flows()[0].state, "closed");
  });
});
