// The MSS option walk and the 16-bit TCP field rewrite behind MSS clamping.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { MSS_ABSENT, MSS_MALFORMED, mssOptionAt } from "../../../src/packet/tcp-mss.ts";
import { setTcpHalfWord } from "../../../src/packet/tcp-rewrite.ts";
import { checksumProblems, SYN, tcp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";

const syn = (tcpOptions: number[]) =>
  tcp({ src: "192.168.0.2", dst: "203.0.113.10", sport: 1, dport: 2, flags: SYN, tcpOptions });
/** The MSS option's offset within the TCP header, or the walk's verdict. */
const at = (opts: number[]) => {
  const r = mssOptionAt(syn(opts), 20, 20 + ((opts.length + 3) & ~3));
  return r < 0 ? r : r - 20;
};

describe("mssOptionAt (RFC 9293 §3.7.1)", () => {
  it("finds the MSS option wherever it is, and says when there is none", () => {
    assert.equal(at([2, 4, 5, 0xb4]), 20);
    assert.equal(at([1, 2, 4, 5, 0xb4]), 21);
    assert.equal(at([4, 2, 1, 3, 3, 7, 2, 4, 5, 0xb4]), 26);
    assert.equal(at([]), MSS_ABSENT);
    assert.equal(at([1, 3, 3, 7]), MSS_ABSENT);
    assert.equal(at([0, 0, 0, 0, 2, 4, 5, 0xb4]), MSS_ABSENT, "after end-of-options: padding");
  });

  it("calls a list that does not parse malformed", () => {
    for (const opts of [
      [8, 0, 2, 4, 5, 0xb4],
      [8, 1, 2, 4, 5, 0xb4],
      [2, 4, 5, 0xb4, 8, 10],
      [2, 3, 5, 1],
      [2, 6, 5, 0xb4, 0, 0],
      [2, 4, 5, 0xb4, 2, 4, 5, 0xb4],
      [1, 1, 1, 8],
    ])
      assert.equal(at(opts), MSS_MALFORMED, `${opts}`);
  });
});

describe("setTcpHalfWord", () => {
  it("keeps the TCP checksum right at even and odd offsets (RFC 1624)", () => {
    assertProperty(
      fc.property(fc.integer({ min: 20, max: 38 }), fc.integer({ min: 0, max: 0xffff }), (field, v) => {
        const pkt = syn(new Array(20).fill(0xa5));
        setTcpHalfWord(pkt, 20, 20 + field, v, false);
        assert.equal((pkt[20 + field] << 8) | pkt[21 + field], v);
        assert.deepEqual(checksumProblems(pkt), []);
      }),
      300,
    );
  });
});
