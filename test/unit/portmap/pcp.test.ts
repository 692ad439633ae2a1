import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { defaultPortmapConfig, type PortmapConfig } from "../../../src/portmap/config.ts";
import {
  buildPcpRequest,
  OPCODE_ANNOUNCE,
  OPCODE_MAP,
  OPTION_FILTER,
  OPTION_PREFER_FAILURE,
  OPTION_THIRD_PARTY,
  PcpResult,
  parsePcpRequest,
  parsePcpRequest6,
  parsePcpResponse,
  pcpMapResponse,
  readMappedIpv4,
  writeMappedIpv4,
} from "../../../src/portmap/pcp.ts";
import { PortmapService } from "../../../src/portmap/service.ts";
import { ip, SYN, tcp, u16, u32 } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, P, REMOTE, run } from "../nat/engine-helpers.ts";

const A = ip("192.168.0.2");
const B = ip("192.168.0.3");
const NONCE = Uint8Array.from({ length: 12 }, (_, i) => i + 1);
const NONCE2 = Uint8Array.from({ length: 12 }, (_, i) => 100 + i);

function mapped(addr: number): Uint8Array {
  const b = new Uint8Array(16);
  writeMappedIpv4(b, 0, addr);
  return b;
}

function filter(remote: number, prefixLength = 128, port = 0): { code: number; data: Uint8Array } {
  const d = new Uint8Array(20);
  d[1] = prefixLength;
  d[2] = port >>> 8;
  d[3] = port & 255;
  writeMappedIpv4(d, 4, remote);
  return { code: OPTION_FILTER, data: d };
}

function map(o: {
  client?: number;
  lifetime?: number;
  protocol?: number;
  internalPort?: number;
  suggestedExternalPort?: number;
  nonce?: Uint8Array;
  options?: Array<{ code: number; data: Uint8Array }>;
}): Uint8Array {
  return buildPcpRequest({
    opcode: OPCODE_MAP,
    lifetime: o.lifetime ?? 3600,
    clientAddr: o.client ?? A,
    nonce: o.nonce ?? NONCE,
    protocol: o.protocol ?? 6,
    internalPort: o.internalPort ?? 8080,
    suggestedExternalPort: o.suggestedExternalPort ?? 0,
    ...(o.options ? { options: o.options } : {}),
  });
}

function setup(over: Partial<PortmapConfig> = {}, engineOver = {}) {
  const engine = makeEngine(engineOver);
  engine.tick(1000);
  let now = 0;
  const svc = new PortmapService({
    engine,
    config: { ...defaultPortmapConfig(), enabled: true, minLifetime: 1, ...over },
    insideNetworks: engine.config.inside,
    nowMs: () => now,
  });
  const ask = (req: Uint8Array, src = A) => {
    const raw = svc.handle(req, src);
    assert.ok(raw, "expected an answer");
    const r = parsePcpResponse(raw);
    assert.ok(r, "expected a PCP response");
    return { ...r, raw };
  };
  return { engine, svc, ask, advance: (ms: number) => (now += ms) };
}

describe("PCP wire format (RFC 6887)", () => {
  it("round-trips IPv4-mapped addresses and reads :: as no preference", () => {
    const b = mapped(ip("192.0.2.33"));
    assert.deepEqual([...b.subarray(8, 16)], [0, 0, 0xff, 0xff, 192, 0, 2, 33]);
    assert.equal(readMappedIpv4(b, 0), ip("192.0.2.33"));
    assert.equal(readMappedIpv4(new Uint8Array(16), 0), 0);
    const v6 = new Uint8Array(16);
    v6[0] = 0x20;
    assert.equal(readMappedIpv4(v6, 0), undefined);
  });

  it("parses a MAP with its options", () => {
    const r = parsePcpRequest(
      map({
        suggestedExternalPort: 9000,
        options: [{ code: OPTION_PREFER_FAILURE, data: new Uint8Array(0) }, filter(ip(REMOTE))],
      }),
      A,
    );
    assert.equal(r.kind, "map");
    if (r.kind !== "map") return;
    assert.deepEqual(
      [r.lifetime, r.protocol, r.internalPort, r.suggestedExternalPort, r.preferFailure],
      [3600, 6, 8080, 9000, true],
    );
    assert.deepEqual(r.filters, [{ remoteAddr: ip(REMOTE), prefixLength: 128, remotePort: 0 }]);
    assert.deepEqual([...r.nonce], [...NONCE]);
  });

  it("parses IPv6 requests: the client field is 16 bytes, and one family's address is not the other's", () => {
    const me = Uint8Array.of(0x20, 1, 0x0d, 0xb8, 0, 1, ...new Array(9).fill(0), 0x10);
    const r6 = parsePcpRequest6(
      buildPcpRequest({ opcode: OPCODE_MAP, lifetime: 60, clientAddr: me, nonce: NONCE, internalPort: 22 }),
      me,
    );
    assert.equal(r6.kind, "map");
    if (r6.kind !== "map") return;
    assert.deepEqual([...r6.clientAddr], [...me]);
    assert.deepEqual([...r6.suggestedExternalAddr], new Array(16).fill(0), "no preference");
    // §8.3: an IPv4-mapped client field over IPv6, or an IPv6 one over IPv4, is not the source.
    const mapped = parsePcpRequest6(map({}), me);
    assert.equal(mapped.kind === "error" && mapped.result, PcpResult.ADDRESS_MISMATCH);
    const v6over4 = parsePcpRequest(buildPcpRequest({ opcode: OPCODE_MAP, lifetime: 60, clientAddr: me }), A);
    assert.equal(v6over4.kind === "error" && v6over4.result, PcpResult.ADDRESS_MISMATCH);
    // The external address of a response is written as given: 16 bytes for IPv6.
    const resp = parsePcpResponse(
      pcpMapResponse({
        result: 0,
        lifetime: 60,
        epochSec: 1,
        nonce: NONCE,
        protocol: 6,
        internalPort: 22,
        externalPort: 22,
        externalAddr: me,
      }),
    );
    assert.deepEqual([...(resp?.externalAddr6 ?? [])], [...me]);
  });

  it("classifies bad requests with the codes of §8.3 and drops what must not be answered", () => {
    const code = (b: Uint8Array, src = A) => {
      const r = parsePcpRequest(b, src);
      return r.kind === "error" ? r.result : r.kind;
    };
    assert.equal(code(Uint8Array.of(2)), "ignore");
    assert.equal(code(new Uint8Array(1104)), "ignore");
    const resp = map({});
    resp[1] |= 0x80;
    assert.equal(code(resp), "ignore");
    const v1 = map({});
    v1[0] = 1;
    assert.equal(code(v1), PcpResult.UNSUPP_VERSION);
    assert.equal(code(map({}).subarray(0, 22)), PcpResult.MALFORMED_REQUEST);
    assert.equal(code(map({}).subarray(0, 40)), PcpResult.MALFORMED_REQUEST, "MAP payload cut short");
    const peer = map({});
    peer[1] = 2;
    assert.equal(code(peer), PcpResult.UNSUPP_OPCODE);
    assert.equal(code(map({}), B), PcpResult.ADDRESS_MISMATCH);
    assert.equal(code(map({ options: [{ code: 99, data: new Uint8Array(4) }] })), PcpResult.UNSUPP_OPTION);
    assert.equal(
      code(map({ options: [{ code: 200, data: new Uint8Array(4) }] })),
      "map",
      "optional option ignored",
    );
    assert.equal(
      code(map({ options: [{ code: OPTION_THIRD_PARTY, data: new Uint8Array(4) }] })),
      PcpResult.MALFORMED_OPTION,
    );
    const overrun = map({ options: [{ code: OPTION_PREFER_FAILURE, data: new Uint8Array(0) }] });
    overrun[62] = 0x01; // option length 256 past the end
    assert.equal(code(overrun), PcpResult.MALFORMED_OPTION);
    assert.equal(code(buildPcpRequest({ opcode: OPCODE_ANNOUNCE, lifetime: 0, clientAddr: A })), "announce");
  });

  it("builds MAP responses the client can read back", () => {
    const raw = pcpMapResponse({
      result: 0,
      lifetime: 600,
      epochSec: 42,
      nonce: NONCE,
      protocol: 17,
      internalPort: 5060,
      externalPort: 15060,
      externalAddr: ip(P),
    });
    assert.equal(raw.length, 60);
    assert.deepEqual([raw[0], raw[1], raw[3]], [2, 0x81, 0]);
    const r = parsePcpResponse(raw);
    assert.deepEqual(
      [r?.lifetime, r?.epochSec, r?.protocol, r?.internalPort, r?.externalPort, r?.externalAddr],
      [600, 42, 17, 5060, 15060, ip(P)],
    );
  });
});

describe("PCP server logic", () => {
  it("ANNOUNCE answers success with the epoch", () => {
    const { ask, advance } = setup();
    advance(12_400);
    const r = ask(buildPcpRequest({ opcode: OPCODE_ANNOUNCE, lifetime: 0, clientAddr: A }));
    assert.deepEqual([r.version, r.opcode, r.result, r.epochSec, r.raw.length], [2, 0, 0, 12, 24]);
  });

  it("MAP grants the suggested port, admits inbound, renews with the same nonce, deletes", () => {
    const { engine, ask } = setup({}, { filtering: "address-port-dependent" });
    const r = ask(map({ protocol: 17, internalPort: 5060, suggestedExternalPort: 15060, lifetime: 600 }));
    assert.deepEqual(
      [r.result, r.lifetime, r.externalPort, r.externalAddr, r.internalPort, r.protocol],
      [0, 600, 15060, ip(P), 5060, 17],
    );
    assert.deepEqual([...(r.nonce ?? [])], [...NONCE]);
    assert.equal(engine.pinList()[0].origin, "pcp");
    const again = ask(map({ protocol: 17, internalPort: 5060, lifetime: 900 }));
    assert.deepEqual([again.result, again.externalPort, again.lifetime], [0, 15060, 900]);
    assert.equal(engine.pinList().length, 1);
    const thief = ask(map({ protocol: 17, internalPort: 5060, lifetime: 0, nonce: NONCE2 }));
    assert.equal(thief.result, PcpResult.NOT_AUTHORIZED, "another nonce cannot delete it");
    const del = ask(map({ protocol: 17, internalPort: 5060, lifetime: 0 }));
    assert.deepEqual([del.result, del.lifetime], [0, 0]);
    assert.equal(engine.pinList().length, 0);
  });

  // Under endpoint-independent filtering the engine admits any remote to a mapping anyway: a
  // FILTER narrows only what the pin itself admits.
  it("FILTER restricts inbound to one remote (address-dependent filtering) and is echoed", () => {
    const { engine, ask } = setup();
    const r = ask(map({ internalPort: 22, suggestedExternalPort: 2222, options: [filter(ip(REMOTE))] }));
    assert.equal(r.result, 0);
    assert.equal(r.raw.length, 60 + 24, "FILTER echoed");
    assert.equal(engine.pinList()[0].remote, REMOTE);
    const other = run(engine, tcp({ src: "203.0.113.77", dst: P, sport: 1, dport: 2222, flags: SYN }));
    assert.equal(other.verdict, DROP);
    const ok = run(engine, tcp({ src: REMOTE, dst: P, sport: 1, dport: 2222, flags: SYN }));
    assert.equal(ok.verdict, FORWARD);
    assert.equal(u32(ok.out, 16), A);
    assert.equal(u16(ok.out, 22), 22);
    assert.equal(
      ask(map({ internalPort: 23, options: [filter(ip(REMOTE)), filter(ip("203.0.113.77"))] })).result,
      PcpResult.EXCESSIVE_REMOTE_PEERS,
    );
    assert.equal(
      ask(map({ internalPort: 23, options: [filter(ip("203.0.113.0"), 120)] })).result,
      PcpResult.UNSUPP_OPTION,
    );
  });

  it("PREFER_FAILURE: CANNOT_PROVIDE_EXTERNAL when the suggested port is taken", () => {
    const { ask } = setup();
    assert.equal(ask(map({ internalPort: 80, suggestedExternalPort: 8000 })).externalPort, 8000);
    const pf = { code: OPTION_PREFER_FAILURE, data: new Uint8Array(0) };
    const r = ask(map({ client: B, internalPort: 80, suggestedExternalPort: 8000, options: [pf] }), B);
    assert.equal(r.result, PcpResult.CANNOT_PROVIDE_EXTERNAL);
    const other = ask(map({ client: B, internalPort: 80, suggestedExternalPort: 8000 }), B);
    assert.equal(other.result, 0);
    assert.notEqual(other.externalPort, 8000);
  });

  it("refusals: another host's address, THIRD_PARTY, malformed, unsupported protocol/opcode/version, quota", () => {
    const { ask, engine } = setup({ maxPerHost: 1 });
    // Asking for B's address from A: the client field must be the packet's source.
    const mismatch = ask(map({ client: B }), A);
    assert.equal(mismatch.result, PcpResult.ADDRESS_MISMATCH);
    assert.equal(mismatch.raw.length, 60, "the request is copied back so the client can match it");
    assert.deepEqual([...(mismatch.nonce ?? [])], [...NONCE]);
    const tp = ask(map({ options: [{ code: OPTION_THIRD_PARTY, data: mapped(B) }] }));
    assert.equal(tp.result, PcpResult.NOT_AUTHORIZED);
    assert.equal(ask(map({}).slice(0, 26)).result, PcpResult.MALFORMED_REQUEST);
    assert.equal(ask(map({ protocol: 1 })).result, PcpResult.UNSUPP_PROTOCOL);
    assert.equal(ask(map({ internalPort: 0 })).result, PcpResult.NOT_AUTHORIZED, "no all-ports mappings");
    const peer = map({});
    peer[1] = 2;
    assert.equal(ask(peer).result, PcpResult.UNSUPP_OPCODE);
    const v9 = map({});
    v9[0] = 9;
    const uv = ask(v9);
    assert.deepEqual([uv.version, uv.result, uv.raw.length], [2, PcpResult.UNSUPP_VERSION, 24]);
    assert.equal(ask(map({ internalPort: 1 })).result, 0);
    const quota = ask(map({ internalPort: 2 }));
    assert.equal(quota.result, PcpResult.USER_EX_QUOTA);
    assert.equal(quota.lifetime, 30, "a short-term error");
    assert.equal(engine.pinList().length, 1);
    assert.equal(
      ask(map({ client: ip("10.1.1.1") }), ip("10.1.1.1")).result,
      PcpResult.NOT_AUTHORIZED,
      "not an inside host",
    );
  });

  it("THIRD_PARTY works when configured, for inside hosts only", () => {
    const { ask, engine } = setup({ thirdParty: true });
    const r = ask(map({ internalPort: 80, options: [{ code: OPTION_THIRD_PARTY, data: mapped(B) }] }));
    assert.equal(r.result, 0);
    assert.equal(engine.pinList()[0].inside.addr, "192.168.0.3");
    const out = ask(
      map({ internalPort: 81, options: [{ code: OPTION_THIRD_PARTY, data: mapped(ip("10.0.0.1")) }] }),
    );
    assert.equal(out.result, PcpResult.NOT_AUTHORIZED);
  });

  it("NAT-PMP and PCP do not take over each other's mappings", () => {
    const { ask, svc } = setup();
    const natpmp = new Uint8Array(12);
    natpmp[1] = 2;
    new DataView(natpmp.buffer).setUint16(4, 8080);
    new DataView(natpmp.buffer).setUint32(8, 60);
    assert.equal(svc.handle(natpmp, A)?.[3], 0);
    assert.equal(ask(map({ internalPort: 8080 })).result, PcpResult.NOT_AUTHORIZED);
  });

  it("a version-0 request goes to NAT-PMP; with NAT-PMP off, PCP answers UNSUPP_VERSION (§9)", () => {
    const on = setup();
    assert.equal(on.svc.handle(Uint8Array.of(0, 0), A)?.length, 12);
    const off = setup({ natpmp: false });
    const r = off.svc.handle(Uint8Array.of(0, 0), A);
    assert.ok(r);
    assert.deepEqual([r.length, r[0], r[3]], [24, 2, PcpResult.UNSUPP_VERSION]);
  });
});

describe("port-mapping server against arbitrary datagrams", () => {
  it("never throws, answers at most 1100 bytes, and never answers a response", () => {
    const { svc } = setup({ thirdParty: true });
    const header = fc.constantFrom(0, 1, 2, 3, 255);
    const datagram = fc.oneof(
      fc.uint8Array({ maxLength: 1200 }),
      // Mostly-valid PCP/NAT-PMP headers with random tails reach deeper into the parsers.
      fc
        .tuple(header, fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 0, maxLength: 120 }))
        .map(([v, op, tail]) => {
          const b = new Uint8Array(tail.length + 24);
          b.set(tail, 24);
          b[0] = v;
          b[1] = op;
          writeMappedIpv4(b, 8, A);
          return b;
        }),
    );
    assertProperty(
      fc.property(datagram, fc.constantFrom(A, B, ip("10.0.0.1")), (msg, src) => {
        const r = svc.handle(msg, src);
        if (r === undefined) return;
        assert.ok(r.length <= 1100);
        assert.ok((r[1] & 0x80) !== 0, "a response has the R bit / opcode + 128");
        assert.ok((msg[1] & 0x80) === 0, "responses are never answered");
      }),
      3000,
    );
  });
});
