import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  EV_MAPPING_CREATED,
  EV_PORT_BLOCK_ADDED,
  EV_QUOTA_EXCEEDED,
  EV_SESSION_DELETED,
} from "../../../src/nat/nat-events.ts";
import {
  dataRecord,
  IpfixPacker,
  TEMPLATE_NAT44,
  TEMPLATE_NAT44_DESTINATION,
  TEMPLATE_PORT_BLOCK,
  TEMPLATE_QUOTA,
  templateSet,
} from "../../../src/natlog/ipfix.ts";
import { sampleEvent as event } from "./sample-event.ts";

const hex = (b: Buffer) => b.toString("hex");

describe("IPFIX NAT event records (RFC 7011, RFC 8158)", () => {
  it("announces the four templates with IANA element ids and lengths (RFC 7011 §3.4.1)", () => {
    assert.equal(
      hex(templateSet()),
      [
        "0002", // template set
        "008c", // length 140: 4 + (4 + 7 × 4) + (4 + 9 × 4) + (4 + 5 × 4) + (4 + 9 × 4)
        "0100 0007", // 256, 7 fields
        "0143 0008 00e6 0001 0004 0001 0008 0004 0007 0002 00e1 0004 00e3 0002",
        "0101 0009", // 257, 9 fields: + destination
        "0143 0008 00e6 0001 0004 0001 0008 0004 0007 0002 00e1 0004 00e3 0002 000c 0004 000b 0002",
        "0102 0005", // 258, 5 fields
        "0143 0008 00e6 0001 01d2 0004 01d9 0004 0008 0004",
        "0103 0009", // 259, 9 fields: a port block (RFC 8158 §4.5)
        "0143 0008 00e6 0001 0004 0001 0008 0004 00e1 0004 0169 0002 016a 0002 016b 0002 016c 0002",
      ]
        .join("")
        .replaceAll(" ", ""),
    );
  });

  it("a mapping created is a NAT44 BIB create (natEvent 8) with the inside and post-NAT endpoints", () => {
    const r = dataRecord(event(EV_MAPPING_CREATED), 1_795_000_000_123, false)!;
    assert.equal(r.template, TEMPLATE_NAT44);
    assert.equal(
      hex(r.bytes),
      [
        "000001a1ee565e7b", // observationTimeMilliseconds 1795000000123
        "08", // natEvent: NAT44 BIB create
        "06", // protocolIdentifier
        "c0a80002 9c40", // sourceIPv4Address, sourceTransportPort 40000
        "c6336407 9d13", // postNATSourceIPv4Address, postNAPTSourceTransportPort 40211
      ]
        .join("")
        .replaceAll(" ", ""),
    );
  });

  it("a session deleted is natEvent 5; the destination only with the destination template", () => {
    const plain = dataRecord(event(EV_SESSION_DELETED), 0, false)!;
    assert.equal(plain.bytes[8], 5);
    assert.equal(plain.bytes.length, 22);
    const dest = dataRecord(event(EV_SESSION_DELETED), 0, true)!;
    assert.equal(dest.template, TEMPLATE_NAT44_DESTINATION);
    assert.equal(hex(dest.bytes.subarray(22)), "cb00710a01bb");
  });

  it("a quota refusal is natEvent 13, maximum entries per user (3), with the limit and host", () => {
    const r = dataRecord(event(EV_QUOTA_EXCEEDED, { limit: 1133 }), 0, false)!;
    assert.equal(r.template, TEMPLATE_QUOTA);
    assert.equal(hex(r.bytes), "0000000000000000" + "0d" + "00000003" + "0000046d" + "c0a80002");
  });

  it("packs records into messages with the RFC 7011 header, the templates first when asked", () => {
    const p = new IpfixPacker(7);
    const r = dataRecord(event(EV_MAPPING_CREATED), 0, false)!;
    const [m] = p.pack([r, r], 1_795_000_000, true);
    const t = templateSet();
    assert.equal(m.length, 16 + t.length + 4 + 44);
    assert.equal(m.readUInt16BE(0), 10);
    assert.equal(m.readUInt16BE(2), m.length);
    assert.equal(m.readUInt32BE(4), 1_795_000_000);
    assert.equal(m.readUInt32BE(8), 0, "no data record sent before");
    assert.equal(m.readUInt32BE(12), 7);
    assert.deepEqual(m.subarray(16, 16 + t.length), t);
    const set = 16 + t.length;
    assert.equal(m.readUInt16BE(set), TEMPLATE_NAT44);
    assert.equal(m.readUInt16BE(set + 2), 48);
    // The next message's sequence number counts the data records before it (RFC 7011 §3.1).
    const [next] = p.pack([r], 1_795_000_001, false);
    assert.equal(next.readUInt32BE(8), 2);
    assert.equal(next.length, 16 + 4 + 22);
  });

  it("never makes a message above its size limit, and loses no record doing so", () => {
    const p = new IpfixPacker(1, 200);
    const r = dataRecord(event(EV_MAPPING_CREATED), 0, false)!;
    const q = dataRecord(event(EV_QUOTA_EXCEEDED), 0, false)!;
    const records = Array.from({ length: 40 }, (_, i) => (i % 7 === 0 ? q : r));
    const messages = p.pack(records, 0, false);
    assert.ok(messages.length > 1);
    let counted = 0;
    for (const m of messages) {
      assert.ok(m.length <= 200, `message of ${m.length} bytes`);
      assert.equal(m.readUInt16BE(2), m.length);
      // Walk the sets: each set's length covers whole records of its template.
      for (let at = 16; at < m.length; ) {
        const id = m.readUInt16BE(at);
        const len = m.readUInt16BE(at + 2);
        counted += (len - 4) / (id === TEMPLATE_QUOTA ? 21 : 22);
        at += len;
      }
    }
    assert.equal(counted, 40);
  });
  it("a port block is natEvent 16 with its first and last port and their count (RFC 8158 §4.5)", () => {
    const e = { ...event(EV_PORT_BLOCK_ADDED), inPort: 40960, outPort: 41471 };
    const r = dataRecord(e, 1_795_000_000_123, true)!;
    assert.equal(r.template, TEMPLATE_PORT_BLOCK);
    const b = r.bytes;
    assert.equal(b.length, 26);
    assert.equal(b.readUInt8(8), 16);
    assert.equal(b.readUInt8(9), e.proto);
    assert.equal(b.readUInt32BE(10), e.inAddr);
    assert.equal(b.readUInt32BE(14), e.outAddr);
    assert.equal(b.readUInt16BE(18), 40960);
    assert.equal(b.readUInt16BE(20), 41471);
    assert.equal(b.readUInt16BE(22), 1);
    assert.equal(b.readUInt16BE(24), 512);
  });
});
