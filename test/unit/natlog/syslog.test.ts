import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  EV_MAPPING_CREATED,
  EV_MAPPING_DELETED,
  EV_QUOTA_EXCEEDED,
  EV_SESSION_CREATED,
} from "../../../src/nat/nat-events.ts";
import {
  headerField,
  octetCounted,
  type SyslogHeader,
  sdValue,
  syslogMessage,
} from "../../../src/natlog/syslog.ts";
import { sampleEvent as event } from "./sample-event.ts";

const HEADER: SyslogHeader = {
  hostname: "gw1",
  appName: "masq",
  procId: "4242",
  facility: 16,
  destination: false,
};
/** 2026-12-02T06:36:01.123Z */
const WALL = Date.UTC(2026, 11, 2, 6, 36, 1, 123);

describe("RFC 5424 NAT event messages (VPP nat_syslog's ids and parameters)", () => {
  it("a mapping created: PRI local0.info, RFC 3339 time, APMADD with the napmap element", () => {
    assert.equal(
      syslogMessage(event(EV_MAPPING_CREATED), WALL, HEADER),
      '<134>1 2026-12-02T06:36:01.123Z gw1 masq 4242 APMADD [napmap IATYP="IPv4" ISADDR="192.168.0.2" ISPORT="40000" XATYP="IPv4" XSADDR="198.51.100.7" XSPORT="40211" PROTO="6"] mapping created tcp 192.168.0.2:40000 -> 198.51.100.7:40211',
    );
  });

  it("leaves the destination out unless configured (RFC 6888 REQ-12), then adds XDADDR and XDPORT", () => {
    const plain = syslogMessage(event(EV_SESSION_CREATED), WALL, HEADER);
    assert.doesNotMatch(plain, /203\.0\.113\.10/);
    assert.match(plain, / SADD \[nsess /);
    const withDest = syslogMessage(event(EV_SESSION_CREATED), WALL, { ...HEADER, destination: true });
    assert.match(withDest, / XDADDR="203\.0\.113\.10" XDPORT="443"\] /);
  });

  it("a mapping deleted is APMDEL; a quota refusal is a warning (PRI 132) naming the host and limit", () => {
    assert.match(
      syslogMessage(event(EV_MAPPING_DELETED), WALL, HEADER),
      /^<134>1 \S+ gw1 masq 4242 APMDEL \[napmap /,
    );
    assert.equal(
      syslogMessage(event(EV_QUOTA_EXCEEDED, { proto: 17, limit: 1133 }), WALL, HEADER),
      '<132>1 2026-12-02T06:36:01.123Z gw1 masq 4242 QUOTA [nquota IATYP="IPv4" ISADDR="192.168.0.2" PROTO="17" LIMIT="1133"] port quota exceeded udp 192.168.0.2 (1133 ports)',
    );
  });

  it("escapes the three characters a PARAM-VALUE cannot hold and nils bad header fields", () => {
    assert.equal(sdValue('a"b\\c]d'), 'a\\"b\\\\c\\]d');
    assert.equal(headerField("gw 1", 255), "-");
    assert.equal(headerField("", 255), "-");
    assert.equal(headerField("x".repeat(49), 48), "-");
    assert.equal(headerField("gw-1.example", 255), "gw-1.example");
  });

  it("frames a message for TCP by octet counting (RFC 6587 §3.4.1): byte length, a space, the message", () => {
    assert.deepEqual(octetCounted("<134>1 - - - - - x"), Buffer.from("18 <134>1 - - - - - x", "ascii"));
    // The length counts bytes, not characters.
    assert.equal(octetCounted("é").toString("latin1").split(" ")[0], "2");
  });
});
