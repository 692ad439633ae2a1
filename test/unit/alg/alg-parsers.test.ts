import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ftpAlg, rewriteFtpLine } from "../../../src/alg/ftp.ts";
import { ircAlg, rewriteIrcLine } from "../../../src/alg/irc.ts";
import { rewriteRtspLine, rtspAlg } from "../../../src/alg/rtsp.ts";
import { SeqAdj, unmapAcks } from "../../../src/alg/seqadj.ts";
import { tftpAlg, tftpRequest } from "../../../src/alg/tftp.ts";
import type { AlgContext } from "../../../src/alg/types.ts";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import * as C from "../../../src/nat/counters.ts";
import { checksum, pseudoHeaderSum, writeU16 } from "../../../src/packet/checksum.ts";
import { setTcpWord } from "../../../src/packet/tcp-rewrite.ts";
import { ACK, checksumProblems, ip, tcp, u32 } from "../../helpers/packets.ts";

const A = "192.168.0.2";
const P = "198.51.100.2";
const S = "203.0.113.10";

interface Made {
  proto: string;
  inPort: number;
  remote: number;
  outPort: number;
}

/** A context that grants every expectation outside port 61000 + n (or the one asked for). */
function fakeCtx(refuse = false) {
  const made: Made[] = [];
  const counts = new Map<number, number>();
  const ctx: AlgContext = {
    inAddr: ip(A),
    inPort: 40000,
    outAddr: ip(P),
    outPort: 61000,
    remAddr: ip(S),
    remPort: 21,
    expect(proto, inPort, remote, outPort) {
      if (refuse) return null;
      const x = { proto, inPort, remote, outPort: outPort || 61001 + made.length };
      made.push(x);
      return { outAddr: ip(P), outPort: x.outPort };
    },
    expectedInPort(proto, outPort) {
      return made.find((m) => m.proto === proto && m.outPort === outPort)?.inPort ?? -1;
    },
    expectedOutPort(proto, inPort) {
      return made.find((m) => m.proto === proto && m.inPort === inPort)?.outPort ?? -1;
    },
    count(slot) {
      counts.set(slot, (counts.get(slot) ?? 0) + 1);
    },
    rewrite16() {},
    greCall: () => null,
    greCallAnswered() {},
    isGreCall: () => false,
    state: undefined,
  };
  return { ctx, made, counts };
}

const bytes = (s: string) => Buffer.from(s, "latin1");

describe("FTP command parser", () => {
  it("PORT: case, leading zeros, spacing and a bare LF are accepted; the terminator is kept", () => {
    for (const [inp, want] of [
      ["PORT 192,168,0,2,156,65\r\n", "PORT 198,51,100,2,238,73\r\n"],
      ["port 192,168,000,002,156,65\n", "port 198,51,100,2,238,73\n"],
      ["PORT  192,168,0,2,156,65 \r\n", "PORT  198,51,100,2,238,73 \r\n"],
    ]) {
      const { ctx, made } = fakeCtx();
      assert.equal(rewriteFtpLine(ctx, inp, true), want);
      assert.deepEqual(made[0], { proto: "tcp", inPort: 40001, remote: ip(S), outPort: 61001 });
    }
  });

  it("EPRT with any delimiter; IPv6 passes; 229 and 227 replies of an inside server", () => {
    const { ctx } = fakeCtx();
    assert.equal(
      rewriteFtpLine(ctx, "EPRT !1!192.168.0.2!40001!\r\n", true),
      "EPRT !1!198.51.100.2!61001!\r\n",
    );
    assert.equal(rewriteFtpLine(ctx, "EPRT |2|::1|40001|\r\n", true), null);
    assert.equal(
      rewriteFtpLine(ctx, "229 Entering Extended Passive Mode (|||30000|)\r\n", true),
      "229 Entering Extended Passive Mode (|||61002|)\r\n",
    );
    assert.equal(
      rewriteFtpLine(ctx, "227 Entering Passive Mode (192,168,0,2,117,48).\r\n", true),
      "227 Entering Passive Mode (198,51,100,2,238,75).\r\n",
    );
    assert.equal(rewriteFtpLine(ctx, "PORT 192,168,0,2,156,65\r\n", false), null, "only outbound");
  });

  it("malformed commands are counted and left alone; a refused expectation leaves the line alone", () => {
    const { ctx, counts, made } = fakeCtx();
    for (const bad of [
      "PORT 192,168,0,2,156\r\n",
      "PORT 192,168,0,2,0,0\r\n",
      "PORT 192,168,0,256,1,1\r\n",
      "PORT -1,168,0,2,1,1\r\n",
      "EPRT |1|192.168.0.2|99999|\r\n",
      "EPRT |1|192.168.0|4000|\r\n",
      "EPRT\r\n",
      "227 no address here\r\n",
      "229 Entering Extended Passive Mode (|||0|)\r\n",
    ])
      assert.equal(rewriteFtpLine(ctx, bad, true), null, bad);
    assert.equal(counts.get(C.C_ALG_MALFORMED), 9);
    assert.equal(made.length, 0);
    const r = fakeCtx(true);
    assert.equal(rewriteFtpLine(r.ctx, "PORT 192,168,0,2,156,65\r\n", true), null);
  });

  it("partial lines that could become a command are interesting; others are not", () => {
    const t = (s: string, out = true) => ftpAlg.interesting(bytes(s), 0, s.length, out);
    assert.ok(t("P"));
    assert.ok(t("PO"));
    assert.ok(t("eprt |1|1"));
    assert.ok(t("22"));
    assert.ok(!t("RETR x"));
    assert.ok(!t("PASV\r\n"));
    assert.ok(!t("PORT 1", false));
  });
});

describe("TFTP request parser", () => {
  const pkt = (op: number, rest: string) => new Uint8Array([0, op, ...bytes(rest)]);
  it("RRQ and WRQ need a file name and a mode, NUL-terminated", () => {
    const req = (b: Uint8Array) => tftpRequest(b, 0, b.length);
    assert.equal(req(pkt(1, "f\0octet\0")), 1);
    assert.equal(req(pkt(2, "f\0netascii\0blksize\x001428\0")), 2);
    assert.equal(req(pkt(1, "\0octet\0")), -1, "empty name");
    assert.equal(req(pkt(1, "f\0octet")), -1, "unterminated");
    assert.equal(req(pkt(3, "xx")), 0, "DATA");
    assert.equal(req(pkt(9, "")), -1);
    assert.equal(req(new Uint8Array([0])), -1, "truncated");
  });

  it("a request expects the server's answer to the client's own port; malformed is counted", () => {
    const { ctx, made, counts } = fakeCtx();
    const rrq = pkt(1, "big.bin\0octet\0");
    tftpAlg.datagram(ctx, rrq, 0, rrq.length, true);
    assert.deepEqual(made, [{ proto: "udp", inPort: 40000, remote: ip(S), outPort: 61001 }]);
    tftpAlg.datagram(ctx, rrq, 0, rrq.length, false);
    tftpAlg.datagram(ctx, pkt(4, "\0\x01"), 0, 4, true);
    assert.equal(made.length, 1);
    tftpAlg.datagram(ctx, new Uint8Array(1), 0, 1, true);
    assert.equal(counts.get(C.C_ALG_MALFORMED), 1);
  });
});

describe("IRC DCC parser", () => {
  const addr = ip(A) >>> 0;
  const pub = ip(P) >>> 0;
  it("DCC SEND and CHAT from the inside host: address and port rewritten, the rest kept", () => {
    const { ctx, made } = fakeCtx();
    assert.equal(
      rewriteIrcLine(ctx, `PRIVMSG bob :\x01DCC SEND "my file.bin" ${addr} 5000 1234\x01\r\n`, true),
      `PRIVMSG bob :\x01DCC SEND "my file.bin" ${pub} 61001 1234\x01\r\n`,
    );
    assert.equal(
      rewriteIrcLine(ctx, `PRIVMSG bob :\x01DCC CHAT chat ${addr} 5001\x01\r\n`, true),
      `PRIVMSG bob :\x01DCC CHAT chat ${pub} 61002\x01\r\n`,
    );
    assert.equal(
      rewriteIrcLine(ctx, "PRIVMSG bob :\x01DCC SEND f 192.168.0.2 5002\x01\r\n", true),
      `PRIVMSG bob :\x01DCC SEND f ${pub} 61003\x01\r\n`,
    );
    assert.equal(made[0].remote, 0, "the peer may connect from anywhere");
  });

  it("RESUME coming in gets the inside port back, ACCEPT going out the outside one", () => {
    const { ctx } = fakeCtx();
    rewriteIrcLine(ctx, `PRIVMSG bob :\x01DCC SEND f ${addr} 5000 99\x01\r\n`, true);
    assert.equal(
      rewriteIrcLine(ctx, ":bob!b@h PRIVMSG alice :\x01DCC RESUME f 61001 50\x01\r\n", false),
      ":bob!b@h PRIVMSG alice :\x01DCC RESUME f 5000 50\x01\r\n",
    );
    assert.equal(
      rewriteIrcLine(ctx, "PRIVMSG bob :\x01DCC ACCEPT f 5000 50\x01\r\n", true),
      "PRIVMSG bob :\x01DCC ACCEPT f 61001 50\x01\r\n",
    );
    // The other way round (the inside host receives): the peer's ports are not ours to touch.
    assert.equal(rewriteIrcLine(ctx, "PRIVMSG bob :\x01DCC RESUME f 61001 50\x01\r\n", true), null);
    assert.equal(rewriteIrcLine(ctx, ":b PRIVMSG a :\x01DCC RESUME f 7777 50\x01\r\n", false), null);
  });

  it("passive (reverse) DCC: the public address shown, port 0 and token kept, nothing expected", () => {
    const { ctx, made } = fakeCtx();
    assert.equal(
      rewriteIrcLine(ctx, `PRIVMSG bob :\x01DCC SEND f ${addr} 0 1 77\x01\r\n`, true),
      `PRIVMSG bob :\x01DCC SEND f ${pub} 0 1 77\x01\r\n`,
    );
    assert.equal(made.length, 0);
  });

  it("foreign addresses, other CTCPs and malformed offers are left alone", () => {
    const { ctx, counts, made } = fakeCtx();
    assert.equal(rewriteIrcLine(ctx, "PRIVMSG bob :\x01DCC SEND f 167772161 5000 1\x01\r\n", true), null);
    assert.equal(counts.get(C.C_ALG_FOREIGN_ADDRESS), 1);
    assert.equal(rewriteIrcLine(ctx, "PRIVMSG bob :\x01ACTION waves\x01\r\n", true), null);
    assert.equal(rewriteIrcLine(ctx, "PRIVMSG bob :hello\r\n", true), null);
    for (const bad of [
      "PRIVMSG bob :\x01DCC SEND f\x01\r\n",
      `PRIVMSG bob :\x01DCC SEND f ${addr} 70000\x01\r\n`,
      "PRIVMSG bob :\x01DCC SEND f 99999999999 5000\x01\r\n",
      "PRIVMSG bob :\x01DCC SEND f 1 2 3\r\n",
    ])
      assert.equal(rewriteIrcLine(ctx, bad, true), null, bad);
    assert.equal(counts.get(C.C_ALG_MALFORMED), 4);
    assert.equal(made.length, 0);
  });

  it("holds partial lines; complete lines only when they carry a DCC", () => {
    const t = (s: string) => ircAlg.interesting(bytes(s), 0, s.length, true);
    assert.ok(t("PRIVMSG bob :\x01DC"));
    assert.ok(t(`PRIVMSG bob :\x01DCC SEND f ${addr} 5000\x01\r\n`));
    assert.ok(!t("PRIVMSG bob :hello\r\n"));
  });
});

describe("RTSP Transport parser", () => {
  it("client_port pairs are pinned as consecutive outside ports; single ports and several transports too", () => {
    const { ctx, made } = fakeCtx();
    assert.equal(
      rewriteRtspLine(ctx, "Transport: RTP/AVP;unicast;client_port=5000-5001\r\n", true),
      "Transport: RTP/AVP;unicast;client_port=61001-61002\r\n",
    );
    assert.deepEqual(
      made.map((m) => [m.proto, m.inPort, m.outPort]),
      [
        ["udp", 5000, 61001],
        ["udp", 5001, 61002],
      ],
    );
    assert.equal(
      rewriteRtspLine(ctx, "transport: RTP/AVP/UDP;client_port=6000,RTP/AVP;client_port=7000-7001\r\n", true),
      "transport: RTP/AVP/UDP;client_port=61003,RTP/AVP;client_port=61004-61005\r\n",
    );
    // The server's echo maps back to the inside ports.
    assert.equal(
      rewriteRtspLine(
        ctx,
        "Transport: RTP/AVP;unicast;client_port=61001-61002;server_port=6970-6971\r\n",
        false,
      ),
      "Transport: RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971\r\n",
    );
  });

  it("other headers, interleaved transports and malformed ports are left alone", () => {
    const { ctx, counts, made } = fakeCtx();
    assert.equal(rewriteRtspLine(ctx, "CSeq: 3\r\n", true), null);
    assert.equal(rewriteRtspLine(ctx, "Transport: RTP/AVP/TCP;interleaved=0-1\r\n", true), null);
    assert.equal(rewriteRtspLine(ctx, "Transport: RTP/AVP;client_port=70000-70001\r\n", true), null);
    assert.equal(counts.get(C.C_ALG_MALFORMED), 1);
    assert.equal(made.length, 0);
    assert.ok(rtspAlg.interesting(bytes("Trans"), 0, 5, true));
    assert.ok(!rtspAlg.interesting(bytes("CSeq: 1\r\n"), 0, 9, true));
  });
});

describe("sequence adjustment", () => {
  it("maps sequence numbers after the change point and acknowledgements back, across the 2^32 wrap", () => {
    const a = new SeqAdj();
    const at = 0xfffffff0;
    a.record(at, 3);
    assert.equal(a.mapSeq(at), at, "the changed segment itself starts where it did");
    assert.equal(a.mapSeq(at + 20), (at + 23) >>> 0);
    assert.equal(a.unmapAck((at + 23 + 5) >>> 0), (at + 25) >>> 0);
    assert.equal(a.unmapAck(at), at);
    a.record(at, 3); // a retransmission of the same segment: not counted twice
    assert.equal(a.after, 3);
    a.record((at + 100) >>> 0, -2);
    assert.equal(a.before, 3);
    assert.equal(a.after, 1);
    assert.equal(a.mapSeq((at + 50) >>> 0), (at + 53) >>> 0);
    assert.equal(a.mapSeq((at + 200) >>> 0), (at + 201) >>> 0);
  });

  it("rewrites SACK edges at an odd offset with a correct checksum", () => {
    // Options: NOP, SACK(1 block), NOP NOP NOP -> the edges start at offset 23 (odd).
    const base = tcp({ src: S, dst: A, sport: 21, dport: 40000, flags: ACK, seq: 1, ack: 2000 });
    const pkt = new Uint8Array(base.length + 16);
    pkt.set(base);
    pkt[2] = 0;
    pkt[3] = pkt.length;
    pkt[32] = 9 << 4;
    pkt.set([1, 5, 10, 0, 0, 0x07, 0xd0 + 5, 0, 0, 0x07, 0xd0 + 9, 1, 1, 1, 0, 0], 40);
    writeU16(pkt, 10, 0);
    writeU16(pkt, 10, checksum(pkt, 0, 20));
    writeU16(pkt, 36, 0);
    writeU16(pkt, 36, checksum(pkt, 20, pkt.length - 20, pseudoHeaderSum(ip(S), ip(A), 6, pkt.length - 20)));
    assert.deepEqual(checksumProblems(pkt), []);
    const adj = new SeqAdj();
    adj.record(1000, 7);
    unmapAcks(pkt, 20, 36, adj, false);
    assert.equal(u32(pkt, 28), 1993);
    assert.equal(u32(pkt, 43), 2005 - 7);
    assert.equal(u32(pkt, 47), 2009 - 7);
    assert.deepEqual(checksumProblems(pkt), []);
    setTcpWord(pkt, 20, 24, 77, false);
    assert.deepEqual(checksumProblems(pkt), []);
  });
});

describe("[alg] configuration", () => {
  const base = { inside: ["lan0"], outside: "wan0" };
  const load = (text: string) => resolveRunConfig({ ...base, config: "masq.toml" }, () => text);
  const errorOf = (text: string) => {
    try {
      load(text);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    assert.fail("no error");
  };

  it("defaults to all four ALGs on their standard ports; tables switch them off and move them", () => {
    const d = load("");
    assert.deepEqual(d.alg.ftp, { enabled: true, ports: [21] });
    assert.deepEqual(d.alg.rtsp.ports, [554]);
    const c = load(
      "[alg]\nexpect_timeout = 30\nmax_expectations = 10\n[alg.ftp]\nports = [21, 2121]\n[alg.irc]\nenabled = false\n",
    );
    assert.deepEqual(c.alg.ftp.ports, [21, 2121]);
    assert.equal(c.alg.irc.enabled, false);
    assert.equal(c.alg.expectTimeoutSec, 30);
    assert.equal(c.alg.maxExpectations, 10);
    assert.deepEqual(load("").alg.ftp.ports, [21], "defaults are not shared between loads");
  });

  it("every error names its key", () => {
    assert.match(
      errorOf("[alg.ftp]\nports = [0]\n"),
      /masq\.toml: alg\.ftp\.ports\.0: must be a port 1-65535/,
    );
    assert.match(errorOf("[alg.ftp]\nports = []\n"), /alg\.ftp\.ports: must list at least one port/);
    assert.match(errorOf('[alg.tftp]\nports = "69"\n'), /alg\.tftp\.ports: must be a list of ports/);
    assert.match(errorOf("[alg.sip]\nenabled = true\n"), /alg\.sip: unknown key/);
    assert.match(errorOf("[alg.ftp]\nenable = true\n"), /alg\.ftp\.enable: unknown key/);
    assert.match(errorOf("[alg]\nexpect_timeout = 0\n"), /alg\.expect_timeout/);
    assert.match(
      errorOf("[alg.irc]\nports = [21]\n"),
      /alg\.irc\.ports: port 21 is already watched by alg\.ftp/,
    );
  });
});
