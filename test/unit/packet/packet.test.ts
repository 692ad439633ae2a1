import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { formatIpv4, parseIpv4 } from "../../../src/packet/addr.ts";
import {
  adjustChecksum,
  checksum,
  diff16,
  diff32,
  fold,
  pseudoHeaderSum,
  readU16,
  writeU16,
  writeU32,
} from "../../../src/packet/checksum.ts";
import { computeIpChecksum, ipFragmentOffset, ipHeaderLength } from "../../../src/packet/ipv4.ts";
import { TCP_OPT_SACK, TCP_OPT_WSCALE, tcpOptionAt } from "../../../src/packet/l4.ts";
import { PacketError, validateIpv4 } from "../../../src/packet/validate.ts";
import { icmpEcho, tcp, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";

describe("Internet checksum (RFC 1071) and incremental update (RFC 1624)", () => {
  it("matches the RFC 1071 worked example", () => {
    const b = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    assert.equal(fold(0x0001 + 0xf203 + 0xf4f5 + 0xf6f7), 0xddf2);
    assert.equal(checksum(b, 0, 8), ~0xddf2 & 0xffff);
  });

  it("handles odd lengths by padding with a zero byte", () => {
    assert.equal(checksum(new Uint8Array([0x12, 0x34, 0x56]), 0, 3), ~(0x1234 + 0x5600) & 0xffff);
  });

  it("RFC 1624 eqn. 3: an incremental update equals a recomputation for any 16/32-bit change", () => {
    assertProperty(
      fc.property(
        fc.uint8Array({ minLength: 20, maxLength: 64 }),
        fc.nat(7),
        fc.integer({ min: 0, max: 0xffffffff }),
        (data, slot, v) => {
          const b = new Uint8Array(data.length & ~1);
          b.set(data.subarray(0, b.length));
          writeU16(b, 0, 0);
          writeU16(b, 0, checksum(b, 0, b.length));
          const at = 2 + 2 * (slot % ((b.length - 6) / 2));
          const old32 = ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
          writeU32(b, at, v >>> 0);
          writeU16(b, 0, adjustChecksum(readU16(b, 0), diff32(old32, v >>> 0)));
          assert.equal(checksum(b, 0, b.length), 0, "sum over data + checksum folds to all ones");
          const old16 = readU16(b, at);
          writeU16(b, at, v & 0xffff);
          writeU16(b, 0, adjustChecksum(readU16(b, 0), diff16(old16, v & 0xffff)));
          assert.equal(checksum(b, 0, b.length), 0);
        },
      ),
      2000,
    );
  });

  it("computes TCP/UDP pseudo-header sums", () => {
    const p = udp({ src: "10.0.0.1", dst: "10.0.0.2", sport: 1, dport: 2 });
    assert.equal(
      checksum(p, 20, p.length - 20, pseudoHeaderSum(0x0a000001, 0x0a000002, 17, p.length - 20)),
      0,
    );
  });
});

function withByte(b: Uint8Array, at: number, v: number): Uint8Array {
  b[at] = v;
  return b;
}

function withU16(b: Uint8Array, at: number, v: number): Uint8Array {
  writeU16(b, at, v);
  return b;
}

describe("IPv4 views and validation", () => {
  it("reads header fields in place, with options", () => {
    const p = udp({ src: "192.168.0.2", dst: "203.0.113.10", sport: 1, dport: 2, options: [1, 1, 1, 0] });
    assert.equal(ipHeaderLength(p, 0), 24);
    assert.equal(validateIpv4(p, 0, p.length), PacketError.None);
    assert.equal(computeIpChecksum(p, 0), readU16(p, 10));
    assert.equal(ipFragmentOffset(p, 0), 0);
  });

  const cases: Array<[string, (b: Uint8Array) => Uint8Array, PacketError]> = [
    ["too short", (b) => b.subarray(0, 19), PacketError.TooShort],
    ["wrong version", (b) => withByte(b, 0, 0x65), PacketError.BadVersion],
    ["IHL < 5", (b) => withByte(b, 0, 0x44), PacketError.BadHeaderLength],
    ["total length beyond the buffer", (b) => withU16(b, 2, b.length + 1), PacketError.BadTotalLength],
    ["bad header checksum", (b) => withByte(b, 10, b[10] ^ 0xff), PacketError.BadHeaderChecksum],
  ];
  for (const [name, mutate, want] of cases) {
    it(`rejects ${name}`, () => {
      const p = tcp({ src: "192.168.0.2", dst: "203.0.113.10", sport: 1, dport: 2, flags: 2 });
      const m = mutate(p);
      assert.equal(validateIpv4(m, 0, m.length), want);
    });
  }

  it("rejects truncated L4 headers and TCP data offsets out of range", () => {
    const t = tcp({ src: "1.1.1.1", dst: "2.2.2.2", sport: 1, dport: 2, flags: 2 });
    const fix = (b: Uint8Array) => {
      writeU16(b, 10, 0);
      writeU16(b, 10, checksum(b, 0, 20));
      return b;
    };
    const short = fix(t.slice(0, 30));
    writeU16(short, 2, 30);
    fix(short);
    assert.equal(validateIpv4(short, 0, 30), PacketError.TruncatedL4);
    const badOff = t.slice();
    badOff[32] = 0x40; // data offset 4 words
    assert.equal(validateIpv4(badOff, 0, badOff.length), PacketError.BadTcpDataOffset);
    badOff[32] = 0xf0; // 60 bytes > segment
    assert.equal(validateIpv4(badOff, 0, badOff.length), PacketError.BadTcpDataOffset);
    const e = icmpEcho({ src: "1.1.1.1", dst: "2.2.2.2", id: 1, payload: 0 });
    const e2 = fix(e.slice(0, 24));
    writeU16(e2, 2, 24);
    fix(e2);
    assert.equal(validateIpv4(e2, 0, 24), PacketError.TruncatedL4);
  });

  it("formats and parses dotted quads strictly", () => {
    assert.equal(formatIpv4(parseIpv4("198.51.100.2")!), "198.51.100.2");
    for (const bad of ["1.2.3", "256.1.1.1", "01.2.3.4", "a.b.c.d", "1.2.3.4.5", ""])
      assert.equal(parseIpv4(bad), undefined, bad);
  });
});

describe("TCP options", () => {
  const header = (opts: ArrayLike<number>) => {
    const b = new Uint8Array(20 + opts.length);
    b.set(opts, 20);
    return b;
  };
  it("finds an option after NOPs and others; -1 when absent or when the list is malformed before it", () => {
    const ws = [1, 1, 2, 4, 5, 0xb4, 3, 3, 7, 0, 0, 0];
    assert.equal(tcpOptionAt(header(ws), 0, 32, TCP_OPT_WSCALE), 26);
    assert.equal(tcpOptionAt(header(ws), 0, 32, TCP_OPT_SACK), -1);
    assert.equal(tcpOptionAt(header([0, 3, 3, 7]), 0, 24, TCP_OPT_WSCALE), -1, "after end of options");
    assert.equal(tcpOptionAt(header([2, 0, 3, 3, 7, 0, 0, 0]), 0, 28, TCP_OPT_WSCALE), -1, "a zero length");
    assert.equal(tcpOptionAt(header([2, 9, 3, 3]), 0, 24, TCP_OPT_WSCALE), -1, "an option past the header");
    assert.equal(tcpOptionAt(header([1, 1, 1, 3]), 0, 24, TCP_OPT_WSCALE), -1, "no room for the length");
  });

  it("never reads past the header, whatever the bytes", () => {
    assertProperty(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(255), (opts, kind) => {
        const b = header(opts);
        const doff = 20 + (opts.length & ~3);
        const at = tcpOptionAt(b, 0, doff, kind);
        assert.ok(at === -1 || (at >= 20 && at + b[at + 1] <= doff && b[at] === kind));
      }),
      300,
    );
  });
});
