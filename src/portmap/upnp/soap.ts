// SOAP 1.1 as UPnP control uses it (UDA 1.1 §3.2): the request envelope parsed with
// fast-xml-parser (a well-kept parser; never a regex over the body), with no entity processing
// and no document type declaration at all (SOAP 1.1 §3 forbids one, and a DTD is where entity
// bombs and external entities live), bounded in size; and the response and fault envelopes.

import { createRequire } from "node:module";
import type * as Fxp from "fast-xml-parser";
import { UPNP_ERROR_TEXT } from "./errors.ts";

// Its CommonJS build, one bundled file: the ES module build is many files, ~50 ms to load at
// every start (a restart's gap, issue 15) against ~6 ms.
const { XMLParser, XMLValidator } = createRequire(import.meta.url)("fast-xml-parser") as typeof Fxp;

/** A control request is a few hundred bytes; the body is read no further than this. */
export const MAX_SOAP_BYTES = 16_384;
/** More arguments than any IGD action has. */
const MAX_ARGS = 16;
const MAX_DEPTH = 8;

export interface SoapRequest {
  /** The action's namespace, e.g. "urn:schemas-upnp-org:service:WANIPConnection:1". */
  serviceType: string;
  action: string;
  /** Argument values, entity references decoded; absent arguments are absent. */
  args: Map<string, string>;
}

/** Why a body is no control request (HTTP 400 for all but an unknown action's, answered 401). */
export type SoapRefusal = "oversized" | "doctype" | "malformed" | "not-soap";

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  removeNSPrefix: false,
  allowBooleanAttributes: false,
});

const PREDEFINED: Readonly<Record<string, string>> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/**
 * Decodes XML's predefined entities and character references (XML 1.0 §4.6, §4.1); undefined when
 * the text holds any other reference (there is no DTD to define one).
 */
export function decodeXmlText(text: string): string | undefined {
  const REF = /&([^;&]{0,10});/g;
  // A bare "&" (the parser let it through untouched) is no text XML allows.
  if (text.replace(REF, "").includes("&")) return undefined;
  let bad = false;
  const out = text.replace(REF, (_, name: string) => {
    if (Object.hasOwn(PREDEFINED, name)) return PREDEFINED[name];
    const m = /^#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}))$/.exec(name);
    const cp = m ? Number.parseInt(m[1] ?? m[2], m[1] ? 16 : 10) : Number.NaN;
    if (!(cp >= 0x20 && cp <= 0x10ffff) && cp !== 0x9 && cp !== 0xa && cp !== 0xd) {
      bad = true;
      return "";
    }
    return String.fromCodePoint(cp);
  });
  return bad ? undefined : out;
}

export function escapeXml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&apos;");
}

type XmlNode = Record<string, unknown>;

function isNode(x: unknown): x is XmlNode {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function localName(key: string): string {
  const i = key.indexOf(":");
  return i < 0 ? key : key.slice(i + 1);
}

function prefixOf(key: string): string | undefined {
  const i = key.indexOf(":");
  return i < 0 ? undefined : key.slice(0, i);
}

/** The one child element of `node` named `name` (any prefix), with its key. */
function child(node: XmlNode, name: string): [string, unknown] | undefined {
  const found = Object.entries(node).filter(([k]) => !k.startsWith("@_") && localName(k) === name);
  return found.length === 1 ? found[0] : undefined;
}

function depth(x: unknown, level = 0): number {
  if (level > MAX_DEPTH) return level;
  if (Array.isArray(x)) return Math.max(level, ...x.map((y) => depth(y, level)));
  if (!isNode(x)) return level;
  let d = level;
  for (const [k, v] of Object.entries(x)) if (!k.startsWith("@_")) d = Math.max(d, depth(v, level + 1));
  return d;
}

/** Parses a control request body (at most MAX_SOAP_BYTES). */
export function parseSoapRequest(body: string): SoapRequest | SoapRefusal {
  if (body.length > MAX_SOAP_BYTES) return "oversized";
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) return "doctype";
  if (XMLValidator.validate(body) !== true) return "malformed";
  let doc: unknown;
  try {
    doc = parser.parse(body);
  } catch {
    return "malformed";
  }
  if (!isNode(doc) || depth(doc) > MAX_DEPTH) return "malformed";
  const env = child(doc, "Envelope");
  if (!env || !isNode(env[1])) return "not-soap";
  const bodyEl = child(env[1], "Body");
  if (!bodyEl || !isNode(bodyEl[1])) return "not-soap";
  const actions = Object.entries(bodyEl[1]).filter(([k]) => !k.startsWith("@_"));
  if (actions.length !== 1) return "not-soap";
  const [actionKey, actionValue] = actions[0];
  // An action without arguments parses as "" (an empty element).
  const actionNode: XmlNode = isNode(actionValue) ? actionValue : {};
  if (!isNode(actionValue) && actionValue !== "") return "not-soap";
  const prefix = prefixOf(actionKey);
  const nsAttr = prefix === undefined ? "@_xmlns" : `@_xmlns:${prefix}`;
  const ns = [actionNode, bodyEl[1], env[1]].map((n) => n[nsAttr]).find((x) => typeof x === "string");
  if (typeof ns !== "string") return "not-soap";
  const args = new Map<string, string>();
  for (const [k, v] of Object.entries(actionNode)) {
    if (k.startsWith("@_")) continue;
    // A repeated or structured argument is no IGD argument: leave it out, so it reads as missing.
    if (typeof v !== "string" || args.size >= MAX_ARGS) return "malformed";
    const text = decodeXmlText(v);
    if (text === undefined) return "malformed";
    args.set(localName(k), text);
  }
  return { serviceType: ns, action: localName(actionKey), args };
}

const ENVELOPE_OPEN =
  '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>';
const ENVELOPE_CLOSE = "</s:Body></s:Envelope>\r\n";

/** `<u:<action>Response>` with the out arguments in order (UDA 1.1 §3.2.1). */
export function soapResponse(
  serviceType: string,
  action: string,
  out: Array<[string, string | number | { cdata: string }]>,
): string {
  // A document in an argument (GetListOfPortMappings' listing) goes as CDATA, as miniupnpd
  // sends it and miniupnpc reads it; its own text is escaped, so it holds no "]]>".
  const text = (v: string | number | { cdata: string }) =>
    typeof v === "object" ? `<![CDATA[${v.cdata.replaceAll("]]>", "]]&gt;")}]]>` : escapeXml(String(v));
  const args = out.map(([k, v]) => `<${k}>${text(v)}</${k}>`).join("");
  return `${ENVELOPE_OPEN}<u:${action}Response xmlns:u="${escapeXml(serviceType)}">${args}</u:${action}Response>${ENVELOPE_CLOSE}`;
}

/** A UPnPError fault (UDA 1.1 §3.2.2), sent with HTTP 500. */
export function soapFault(code: number): string {
  const text = UPNP_ERROR_TEXT[code] ?? "Action Failed";
  return `${ENVELOPE_OPEN}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${escapeXml(text)}</errorDescription></UPnPError></detail></s:Fault>${ENVELOPE_CLOSE}`;
}
