// SOAP control requests (UDA 1.1 §3.2): parsed with entity processing off, no DTD, bounded;
// anything else is refused with a reason, never thrown on.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  decodeXmlText,
  MAX_SOAP_BYTES,
  parseSoapRequest,
  type SoapRequest,
  soapFault,
  soapResponse,
} from "../../../src/portmap/upnp/soap.ts";
import { assertProperty } from "../../helpers/property.ts";

const WANIP1 = "urn:schemas-upnp-org:service:WANIPConnection:1";

function envelope(action: string, args: Record<string, string>, ns = WANIP1): string {
  const inner = Object.entries(args)
    .map(([k, v]) => `<${k}>${v}</${k}>`)
    .join("");
  return `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${ns}">${inner}</u:${action}></s:Body></s:Envelope>`;
}

function parsed(body: string): SoapRequest {
  const r = parseSoapRequest(body);
  assert.equal(typeof r, "object", `parsed, not ${String(r)}`);
  return r as SoapRequest;
}

describe("SOAP control requests", () => {
  it("reads the action, its service type and its arguments", () => {
    const r = parsed(
      envelope("AddPortMapping", { NewExternalPort: "18080", NewProtocol: "TCP", NewRemoteHost: "" }),
    );
    assert.equal(r.action, "AddPortMapping");
    assert.equal(r.serviceType, WANIP1);
    assert.deepEqual(Object.fromEntries(r.args), {
      NewExternalPort: "18080",
      NewProtocol: "TCP",
      NewRemoteHost: "",
    });
  });

  it("takes an action without arguments, a default namespace, and other prefixes", () => {
    assert.equal(parsed(envelope("GetExternalIPAddress", {})).args.size, 0);
    const r = parsed(
      `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><GetStatusInfo xmlns="${WANIP1}"/></SOAP-ENV:Body></SOAP-ENV:Envelope>`,
    );
    assert.equal(r.action, "GetStatusInfo");
    assert.equal(r.serviceType, WANIP1);
  });

  it("decodes the predefined entities and character references only", () => {
    const r = parsed(
      envelope("AddPortMapping", { NewPortMappingDescription: "a&amp;b &lt;c&gt; &#65;&#x42;" }),
    );
    assert.equal(r.args.get("NewPortMappingDescription"), "a&b <c> AB");
    assert.equal(decodeXmlText("&foo;"), undefined);
    assert.equal(decodeXmlText("&#0;"), undefined);
    assert.equal(decodeXmlText("a & b"), undefined);
  });

  it("refuses malformed XML", () => {
    for (const body of [
      "",
      "not xml",
      "<s:Envelope><s:Body></s:Envelope>",
      envelope("AddPortMapping", { NewExternalPort: "1" }).replace("</u:AddPortMapping>", ""),
      "<a><b>1</a>",
    ])
      assert.equal(parseSoapRequest(body), "malformed", JSON.stringify(body));
  });

  it("refuses entity bombs and external entities: no DTD is ever read", () => {
    const bomb = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>${envelope("AddPortMapping", { NewPortMappingDescription: "&lol3;" }).replace('<?xml version="1.0"?>', "")}`;
    assert.equal(parseSoapRequest(bomb), "doctype");
    const xxe = `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${envelope("X", { A: "&e;" }).replace('<?xml version="1.0"?>', "")}`;
    assert.equal(parseSoapRequest(xxe), "doctype");
    // An undefined entity without a DTD is not expanded: the argument is refused.
    assert.equal(
      parseSoapRequest(envelope("AddPortMapping", { NewPortMappingDescription: "&lol3;" })),
      "malformed",
    );
  });

  it("refuses oversized bodies", () => {
    const big = envelope("AddPortMapping", { NewPortMappingDescription: "x".repeat(MAX_SOAP_BYTES) });
    assert.equal(parseSoapRequest(big), "oversized");
  });

  it("refuses what is no SOAP control request: no envelope, no body, two actions, no namespace", () => {
    assert.equal(parseSoapRequest("<a>1</a>"), "not-soap");
    assert.equal(parseSoapRequest("<a><b>1</b></a><c/>"), "not-soap");
    assert.equal(parseSoapRequest('<s:Envelope xmlns:s="x"><s:Header/></s:Envelope>'), "not-soap");
    assert.equal(
      parseSoapRequest(
        `<s:Envelope xmlns:s="x"><s:Body><u:A xmlns:u="${WANIP1}"/><u:B xmlns:u="${WANIP1}"/></s:Body></s:Envelope>`,
      ),
      "not-soap",
    );
    assert.equal(
      parseSoapRequest('<s:Envelope xmlns:s="x"><s:Body><u:A/></s:Body></s:Envelope>'),
      "not-soap",
    );
  });

  it("refuses structured or repeated arguments and deep nesting", () => {
    assert.equal(parseSoapRequest(envelope("AddPortMapping", { NewExternalPort: "<x>1</x>" })), "malformed");
    assert.equal(
      parseSoapRequest(
        envelope("AddPortMapping", { NewExternalPort: "1</NewExternalPort><NewExternalPort>2" }),
      ),
      "malformed",
    );
    const deep = `${"<a>".repeat(20)}1${"</a>".repeat(20)}`;
    assert.equal(parseSoapRequest(envelope("X", { A: deep })), "malformed");
  });

  it("never throws on arbitrary bodies", () => {
    assertProperty(
      fc.property(fc.string({ maxLength: 400 }), (s) => {
        const r = parseSoapRequest(s);
        assert.ok(typeof r === "string" || typeof r === "object");
      }),
      300,
    );
    assertProperty(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        parseSoapRequest(envelope("AddPortMapping", { NewPortMappingDescription: s }));
      }),
      300,
    );
  });

  it("builds responses with escaped values and UPnPError faults", () => {
    const r = soapResponse(WANIP1, "GetExternalIPAddress", [["NewExternalIPAddress", "1.2.3.4<"]]);
    assert.match(
      r,
      /<u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">/,
    );
    assert.match(r, /<NewExternalIPAddress>1\.2\.3\.4&lt;<\/NewExternalIPAddress>/);
    assert.match(
      soapResponse(WANIP1, "X", [["L", { cdata: "<a>]]></a>" }]]),
      /<L><!\[CDATA\[<a>]]&gt;<\/a>]]><\/L>/,
    );
    const f = soapFault(718);
    assert.match(
      f,
      /<errorCode>718<\/errorCode><errorDescription>ConflictInMappingEntry<\/errorDescription>/,
    );
    assert.match(f, /<faultcode>s:Client<\/faultcode><faultstring>UPnPError<\/faultstring>/);
  });
});
