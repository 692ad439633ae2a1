// Whether this masq can read a snapshot's bytes back: not "the same masq version" (an upgrade
// that leaves the tables as they were would lose every connection for nothing) but the same
// state layout. The fingerprint hashes what decides it, taken from the code itself:
//  - the snapshot format (snapshot-file.ts);
//  - the records' layouts: the flow and mapping tables' word counts, field offsets and state
//    bits (their exported constants), the host table's port slots, the TCP sequence record's
//    words and flags, a pin's fields, the fields of the ALGs' per-flow classes;
//  - the image's leaves as a small engine of a fixed configuration lays them out, with its ALGs
//    and an IPv6 filter: every kept array (element type and length, so words per record) and
//    scalar, by path. A field added, removed, renamed or retyped anywhere changes it; a record
//    grown by a word changes an array's length.
// What the configuration decides (table sizes, addresses, ALGs on) is configHash's
// (keep-state.ts); restoreImage still checks the image against the engine it goes into.
import { createHash } from "node:crypto";
import { DEFAULT_ALG_CONFIG } from "../alg/config.ts";
import { AlgRegistry } from "../alg/registry.ts";
import { algImageParts } from "../alg/snapshot.ts";
import { IP6_FILTER_SNAPSHOT_SKIP, Ip6Filter } from "../ipv6fw/filter.ts";
import { defaultEngineConfig } from "../nat/config.ts";
import { type ImageParts, NatEngine } from "../nat/engine.ts";
import * as flowTable from "../nat/flow-table.ts";
import { NO_HOST, PORT_SLOTS } from "../nat/host-table.ts";
import * as mappingTable from "../nat/mapping-table.ts";
import { PinRegistry } from "../nat/pins.ts";
import { SLOT_ICMP, SLOT_TCP, SLOT_UDP } from "../nat/port-quota.ts";
import { TCP_RECORD_LAYOUT } from "../nat/tcp-state.ts";
import { SNAPSHOT_FORMAT } from "./snapshot-file.ts";

/** What the image holds besides the engine: the ALGs' records and the IPv6 filter's table. */
export function imageParts(algs: AlgRegistry, ip6: Ip6Filter | undefined): ImageParts {
  const parts = algImageParts(algs);
  if (!ip6) return parts;
  return { ...parts, roots: { ...parts.roots, ip6 }, skip: [...parts.skip, ...IP6_FILTER_SNAPSHOT_SKIP] };
}

/** JSON with the keys of every object sorted: the same value, the same text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object")
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v) ?? "null";
}

/** A module's exported numbers (a table's offsets and bits), by name. */
function numbersOf(mod: Record<string, unknown>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(mod).filter((e): e is [string, number] => typeof e[1] === "number"),
  );
}

/** An object's fields and their types, nested objects expanded (a class the image keeps). */
function fieldsOf(obj: object, seen = new Set<object>()): Record<string, unknown> {
  seen.add(obj);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v !== null && typeof v === "object" && !ArrayBuffer.isView(v) && !seen.has(v))
      out[k] = Array.isArray(v) ? "array" : fieldsOf(v, seen);
    else out[k] = v === null ? "null" : ArrayBuffer.isView(v) ? v.constructor.name : typeof v;
  }
  return out;
}

/** The layout, as the hash sees it (readable: a test or a curious operator may print it). */
export function stateLayout(): Record<string, unknown> {
  // A fixed, small configuration: the shape's lengths then depend on the code alone.
  const engine = new NatEngine(
    defaultEngineConfig({
      inside: [{ addr: 0x0a000000, len: 8 }],
      outside: [0xc0000201],
      maxFlows: 256,
      maxMappings: 256,
      maxHosts: 16,
      maxHalfOpen: 64,
    }),
  );
  const algs = new AlgRegistry(engine, DEFAULT_ALG_CONFIG, 1500);
  engine.attachAlg(algs);
  const parts = imageParts(algs, new Ip6Filter({ capacity: 64, filtering: "address-port-dependent" }));
  const pin = new PinRegistry(1).add({
    mapping: 0,
    remoteAddr: 0,
    expiresAtSec: 0,
    oneShot: false,
    origin: "",
    note: "",
  });
  return {
    format: SNAPSHOT_FORMAT,
    flowRecord: numbersOf(flowTable),
    mappingRecord: numbersOf(mappingTable),
    hostRecord: { NO_HOST, PORT_SLOTS, SLOT_TCP, SLOT_UDP, SLOT_ICMP },
    tcpRecord: TCP_RECORD_LAYOUT,
    pin: fieldsOf(pin ?? {}),
    classes: Object.fromEntries(Object.entries(parts.classes).map(([name, C]) => [name, fieldsOf(new C())])),
    image: engine.stateShape(parts),
  };
}

/** The fingerprint of a layout: 16 hex digits of its SHA-256. */
export function layoutFingerprint(layout: Record<string, unknown>): string {
  return createHash("sha256").update(canonicalJson(layout)).digest("hex").slice(0, 16);
}

let cached: string | undefined;

/** This masq's state-layout fingerprint (computed once: a small engine is built for it). */
export function stateLayoutFingerprint(): string {
  cached ??= layoutFingerprint(stateLayout());
  return cached;
}
