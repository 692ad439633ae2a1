// SSDP (UDA 1.1 §1): what masq takes for a search, what it answers and announces, and the
// amplification bound on its answers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { igdTree } from "../../../src/portmap/upnp/device.ts";
import {
  AMPLIFICATION_LIMIT,
  answersWithinBudget,
  MAX_SEARCH_BYTES,
  matching,
  notify,
  parseSearch,
  targets,
} from "../../../src/portmap/upnp/ssdp.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const search = (st: string, extra = "MX: 2\r\n") =>
  enc(
    `M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n${extra}ST: ${st}\r\n\r\n`,
  );
const announcer = {
  location: "http://192.168.0.1:5000/rootDesc.xml",
  maxAgeSec: 900,
  bootId: 7,
  configId: 1,
};
const v1 = igdTree(1, "test");
const v2 = igdTree(2, "test");
const IGD1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
const WANIP1 = "urn:schemas-upnp-org:service:WANIPConnection:1";
const WANIP2 = "urn:schemas-upnp-org:service:WANIPConnection:2";

describe("SSDP search parsing", () => {
  it("takes a multicast M-SEARCH with its ST and MX, headers in any case", () => {
    assert.deepEqual(parseSearch(search(IGD1)), { st: IGD1, mx: 2 });
    assert.deepEqual(
      parseSearch(enc(`M-SEARCH * HTTP/1.1\r\nman: "ssdp:discover"\r\nst: ssdp:all\r\nmx: 1\r\n\r\n`)),
      { st: "ssdp:all", mx: 1 },
    );
    // Unicast searches (UDA 1.1 §1.3.2) carry no MX: answered at once.
    assert.deepEqual(parseSearch(search("upnp:rootdevice", "")), { st: "upnp:rootdevice", mx: 0 });
  });

  it("refuses what is no search: NOTIFY, other methods, no MAN or ST, a bad MX, oversized, junk", () => {
    assert.equal(parseSearch(enc("NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\n\r\n")), "notify");
    assert.equal(parseSearch(enc("GET / HTTP/1.1\r\n\r\n")), "malformed");
    assert.equal(parseSearch(enc(`M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMX: 1\r\n\r\n`)), "malformed");
    assert.equal(
      parseSearch(enc(`M-SEARCH * HTTP/1.1\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n\r\n`)),
      "malformed",
    );
    assert.equal(parseSearch(search("ssdp:all", "MX: -1\r\n")), "malformed");
    assert.equal(parseSearch(search("ssdp:all", "MX: 999\r\n")), "malformed");
    assert.equal(parseSearch(search("ssdp:all", "no colon here\r\n")), "malformed");
    assert.equal(parseSearch(new Uint8Array(MAX_SEARCH_BYTES + 1)), "oversized");
    assert.equal(parseSearch(Uint8Array.of(0xff, 0, 1, 2)), "malformed");
    assert.equal(parseSearch(search("ssdp:all", "X: y\r\n".repeat(40))), "malformed");
  });
});

describe("SSDP targets and answers", () => {
  it("announces the root device three times, each embedded device twice, each service once", () => {
    const t = targets(v1);
    assert.equal(t.length, 3 + 2 * 2 + 2);
    assert.deepEqual(t[0], { nt: IGD1, usn: `${v1.udn}::${IGD1}` });
    assert.ok(t.some((x) => x.nt === "upnp:rootdevice" && x.usn === `${v1.udn}::upnp:rootdevice`));
    assert.ok(t.some((x) => x.nt === WANIP1));
  });

  it("answers ssdp:all with everything, a type with its devices and services, others with nothing", () => {
    assert.equal(matching(v1, "ssdp:all").length, targets(v1).length);
    assert.deepEqual(
      matching(v1, "upnp:rootdevice").map((t) => t.nt),
      ["upnp:rootdevice"],
    );
    assert.deepEqual(
      matching(v1, WANIP1).map((t) => t.nt),
      [WANIP1],
    );
    assert.deepEqual(matching(v1, v1.udn), [{ nt: v1.udn, usn: v1.udn }]);
    assert.deepEqual(matching(v1, WANIP2), [], "a v1 device does not answer a v2 search");
    assert.deepEqual(matching(v1, "urn:schemas-upnp-org:service:WANPPPConnection:1"), []);
    assert.deepEqual(matching(v1, "urn:schemas-upnp-org:device:MediaServer:1"), []);
  });

  it("a v2 device answers a v1 search with the version asked for (UDA 1.1 §1.3.2)", () => {
    const [t] = matching(v2, WANIP1);
    assert.equal(t.nt, WANIP1);
    assert.match(t.usn, /::urn:schemas-upnp-org:service:WANIPConnection:1$/);
    assert.equal(matching(v2, WANIP2)[0].nt, WANIP2);
  });

  it("builds the answer and the NOTIFY alive and byebye messages", () => {
    const t = matching(v1, IGD1)[0];
    const answer = answersWithinBudget(v1, { st: IGD1, mx: 1 }, search(IGD1).length, announcer).answers[0];
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(answer, /\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n/);
    assert.match(answer, /\r\nLOCATION: http:\/\/192\.168\.0\.1:5000\/rootDesc\.xml\r\n/);
    assert.match(answer, /\r\nCACHE-CONTROL: max-age=900\r\n/);
    assert.match(answer, /\r\nBOOTID\.UPNP\.ORG: 7\r\n/);
    assert.ok(answer.endsWith("\r\n\r\n"));
    const alive = notify(t, announcer, "ssdp:alive");
    assert.match(alive, /^NOTIFY \* HTTP\/1\.1\r\nHOST: 239\.255\.255\.250:1900\r\n/);
    assert.match(alive, /\r\nNTS: ssdp:alive\r\n/);
    assert.match(alive, /\r\nLOCATION: /);
    const bye = notify(t, announcer, "ssdp:byebye");
    assert.match(bye, /\r\nNTS: ssdp:byebye\r\n/);
    assert.doesNotMatch(bye, /LOCATION|CACHE-CONTROL/, "byebye carries no location (UDA 1.1 §1.2.3)");
  });

  it("never answers with more than ten bytes per byte of search: ssdp:all is cut, most useful first", () => {
    for (const st of ["ssdp:all", "upnp:rootdevice", IGD1, WANIP1]) {
      const req = search(st);
      const { answers, overBudget } = answersWithinBudget(v1, { st, mx: 1 }, req.length, announcer);
      const bytes = answers.reduce((n, a) => n + a.length, 0);
      assert.ok(bytes <= req.length * AMPLIFICATION_LIMIT, `${st}: ${bytes} bytes for ${req.length}`);
      assert.ok(answers.length >= 1, `${st} gets an answer`);
      if (st === "ssdp:all") {
        assert.ok(overBudget > 0, "a small ssdp:all cannot draw every answer");
        assert.match(answers[0], /ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1/);
        assert.match(answers[1], /ST: upnp:rootdevice/);
      }
    }
    // A search too small for any answer within the bound gets none.
    assert.deepEqual(answersWithinBudget(v1, { st: IGD1, mx: 1 }, 20, announcer).answers, []);
  });
});
