import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { defaultPortmapConfig, type PortmapConfig } from "../../../src/portmap/config.ts";
import {
  errorResponse,
  externalAddressResponse,
  mapResponse,
  NatPmpResult,
  parseNatPmpRequest,
} from "../../../src/portmap/natpmp.ts";
import { PortmapService } from "../../../src/portmap/service.ts";
import { ip, SYN, tcp, u16, u32 } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "../nat/engine-helpers.ts";
import { mapReq } from "./natpmp-requests.ts";

const A = ip("192.168.0.2");
const B = ip("192.168.0.3");

function decode(b: Uint8Array | undefined) {
  assert.ok(b, "expected an answer");
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    len: b.length,
    version: b[0],
    op: b[1],
    result: dv.getUint16(2),
    epoch: dv.getUint32(4),
    addr: b.length >= 12 ? dv.getUint32(8) : undefined,
    internal: b.length >= 16 ? dv.getUint16(8) : undefined,
    external: b.length >= 16 ? dv.getUint16(10) : undefined,
    lifetime: b.length >= 16 ? dv.getUint32(12) : undefined,
  };
}

function setup(over: Partial<PortmapConfig> = {}, engineOver = {}) {
  const engine = makeEngine(engineOver);
  engine.tick(1000); // start the clock
  let now = 5000;
  const svc = new PortmapService({
    engine,
    config: { ...defaultPortmapConfig(), enabled: true, minLifetime: 1, ...over },
    insideNetworks: engine.config.inside,
    nowMs: () => now,
  });
  return { engine, svc, advance: (ms: number) => (now += ms) };
}

describe("NAT-PMP wire format (RFC 6886)", () => {
  it("parses the external address and mapping requests", () => {
    assert.deepEqual(parseNatPmpRequest(Uint8Array.of(0, 0)), { kind: "external-address" });
    assert.deepEqual(parseNatPmpRequest(mapReq(2, 8080, 8081, 7200)), {
      kind: "map",
      proto: "tcp",
      internalPort: 8080,
      suggestedExternalPort: 8081,
      lifetime: 7200,
    });
    assert.equal((parseNatPmpRequest(mapReq(1, 53, 0, 60)) as { proto: string }).proto, "udp");
  });

  it("refuses other versions and opcodes with the right codes, and ignores responses and runts", () => {
    assert.deepEqual(parseNatPmpRequest(Uint8Array.of(1, 0)), { kind: "error", opcode: 0, result: 1 });
    assert.deepEqual(parseNatPmpRequest(Uint8Array.of(0, 3, 0, 0)), { kind: "error", opcode: 3, result: 5 });
    assert.equal(parseNatPmpRequest(Uint8Array.of(0, 128)).kind, "ignore");
    assert.equal(parseNatPmpRequest(Uint8Array.of(0)).kind, "ignore");
    assert.equal(parseNatPmpRequest(Uint8Array.of(0, 2, 0, 0, 0, 80)).kind, "ignore");
  });

  it("builds responses byte for byte", () => {
    assert.deepEqual(
      [...externalAddressResponse(0, 0x01020304, ip("198.51.100.2"))],
      [0, 128, 0, 0, 1, 2, 3, 4, 198, 51, 100, 2],
    );
    assert.deepEqual(
      [...mapResponse("tcp", 0, 7, 8080, 61000, 3600)],
      [0, 130, 0, 0, 0, 0, 0, 7, 0x1f, 0x90, 0xee, 0x48, 0, 0, 0x0e, 0x10],
    );
    assert.deepEqual([...errorResponse(3, 5, 9)], [0, 131, 0, 5, 0, 0, 0, 9]);
  });
});

describe("NAT-PMP server logic", () => {
  it("answers the external address with the epoch (seconds since start)", () => {
    const { svc, advance } = setup();
    advance(3500);
    const r = decode(svc.handle(Uint8Array.of(0, 0), A));
    assert.deepEqual([r.len, r.op, r.result, r.epoch, r.addr], [12, 128, 0, 3, ip(P)]);
  });

  it("maps TCP with the suggested port, admits unsolicited inbound to it, renews, and deletes", () => {
    const { engine, svc } = setup({}, { filtering: "address-port-dependent" });
    const r = decode(svc.handle(mapReq(2, 8080, 18080, 3600), A));
    assert.deepEqual(
      [r.len, r.op, r.result, r.internal, r.external, r.lifetime],
      [16, 130, 0, 8080, 18080, 3600],
    );
    const pins = engine.pinList();
    assert.equal(pins.length, 1);
    assert.equal(pins[0].origin, "natpmp");
    const syn = run(engine, tcp({ src: REMOTE, dst: P, sport: 5000, dport: 18080, flags: SYN }));
    assert.equal(syn.verdict, FORWARD);
    assert.equal(u32(syn.out, 16), A);
    assert.equal(u16(syn.out, 22), 8080);

    // Renewal (even suggesting another port) keeps the port and the single pin.
    const again = decode(svc.handle(mapReq(2, 8080, 9999, 7200), A));
    assert.deepEqual([again.result, again.external, again.lifetime], [0, 18080, 7200]);
    assert.equal(engine.pinList().length, 1);
    assert.equal(svc.stats().mappings_renewed, 1);

    const del = decode(svc.handle(mapReq(2, 8080, 0, 0), A));
    assert.deepEqual([del.result, del.internal, del.external, del.lifetime], [0, 8080, 0, 0]);
    assert.equal(engine.pinList().length, 0);
    // The established flow stays; a new connection is no longer admitted.
    const late = run(engine, tcp({ src: REMOTE, dst: P, sport: 5001, dport: 18080, flags: SYN }));
    assert.equal(late.verdict, DROP);
  });

  it("gives another port when the suggested one is taken, and UDP and TCP independently", () => {
    const { svc } = setup();
    assert.equal(decode(svc.handle(mapReq(2, 8080, 20000, 60), A)).external, 20000);
    const b = decode(svc.handle(mapReq(2, 8080, 20000, 60), B));
    assert.equal(b.result, 0);
    assert.notEqual(b.external, 20000);
    assert.equal(decode(svc.handle(mapReq(1, 8080, 20000, 60), B)).external, 20000, "UDP port 20000 is free");
  });

  it("clamps lifetimes to the configured bounds", () => {
    const { svc } = setup({ minLifetime: 120, maxLifetime: 3600 });
    assert.equal(decode(svc.handle(mapReq(1, 5000, 0, 10), A)).lifetime, 120);
    assert.equal(decode(svc.handle(mapReq(1, 5001, 0, 1_000_000), A)).lifetime, 3600);
  });

  it("lets the mapping lapse in the engine on time", () => {
    const { engine, svc } = setup();
    const now = engine.clockSec;
    decode(svc.handle(mapReq(2, 8080, 0, 5), A));
    engine.tick((now + 4) * 1000);
    assert.equal(engine.pinList().length, 1);
    engine.tick((now + 5) * 1000);
    assert.equal(engine.pinList().length, 0);
    assert.equal(svc.stats().mappings_active, 0);
  });

  it("deletes all of a client's mappings of one protocol with internal port 0, and no one else's", () => {
    const { engine, svc } = setup();
    svc.handle(mapReq(2, 1000, 0, 60), A);
    svc.handle(mapReq(2, 1001, 0, 60), A);
    svc.handle(mapReq(1, 1002, 0, 60), A);
    svc.handle(mapReq(2, 1000, 0, 60), B);
    assert.equal(decode(svc.handle(mapReq(2, 0, 0, 0), A)).result, 0);
    const left = engine.pinList().map((p) => `${p.protocol} ${p.inside.addr}:${p.inside.port}`);
    assert.deepEqual(left.sort(), ["tcp 192.168.0.3:1000", "udp 192.168.0.2:1002"]);
  });

  it("refuses hosts off the inside networks, over-quota hosts, and bad versions/opcodes", () => {
    const { svc } = setup({ maxPerHost: 2 });
    assert.equal(decode(svc.handle(Uint8Array.of(0, 0), ip("10.9.9.9"))).result, NatPmpResult.NOT_AUTHORIZED);
    assert.equal(
      decode(svc.handle(mapReq(2, 80, 0, 60), ip("10.9.9.9"))).result,
      NatPmpResult.NOT_AUTHORIZED,
    );
    assert.equal(decode(svc.handle(mapReq(2, 80, 0, 60), A)).result, 0);
    assert.equal(decode(svc.handle(mapReq(2, 81, 0, 60), A)).result, 0);
    const full = decode(svc.handle(mapReq(2, 82, 0, 60), A));
    assert.deepEqual([full.len, full.op, full.result], [16, 130, NatPmpResult.OUT_OF_RESOURCES]);
    assert.equal(decode(svc.handle(mapReq(2, 82, 0, 60), B)).result, 0, "another host is not affected");
    const v = decode(svc.handle(Uint8Array.of(0, 9), A));
    assert.deepEqual([v.len, v.op, v.result], [8, 137, NatPmpResult.UNSUPPORTED_OPCODE]);
    assert.equal(svc.stats().natpmp_result_unsupported_opcode, 1);
  });

  it("with PCP off, a PCP request gets NAT-PMP's unsupported version (the client falls back)", () => {
    const { svc } = setup({ pcp: false });
    const r = decode(
      svc.handle(
        new Uint8Array(60).fill(0).map((_, i) => (i === 0 ? 2 : i === 1 ? 1 : 0)),
        A,
      ),
    );
    assert.deepEqual([r.len, r.version, r.op, r.result], [8, 0, 129, NatPmpResult.UNSUPPORTED_VERSION]);
  });

  it("interface mode: suggestions outside masq's port range are not honoured; an exhausted range is out of resources", () => {
    const { svc } = setup(
      {},
      {
        mode: "interface",
        ports: {
          tcp: { first: 61000, last: 61001 },
          udp: { first: 61000, last: 61063 },
          icmp: { first: 61000, last: 61063 },
        },
      },
    );
    // Interface mode: a suggestion outside masq's range cannot be received, so it is not honoured.
    const a = decode(svc.handle(mapReq(2, 8080, 8080, 60), A));
    assert.equal(a.result, 0);
    assert.ok(a.external! >= 61000 && a.external! <= 61001);
    assert.equal(decode(svc.handle(mapReq(2, 8081, 0, 60), A)).result, 0);
    assert.equal(decode(svc.handle(mapReq(2, 8082, 0, 60), A)).result, NatPmpResult.OUT_OF_RESOURCES);
  });
});

describe("[portmap] configuration", () => {
  const withFile = (text: string) =>
    resolveRunConfig({ inside: ["lan0"], outside: "wan0", config: "masq.toml" }, () => text);
  const problem = (text: string) => {
    try {
      withFile(text);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    assert.fail("accepted");
  };

  it("is off by default and reads every key", () => {
    assert.equal(withFile("").portmap.enabled, false);
    const c = withFile(
      "[portmap]\nenabled = true\nnatpmp = false\npcp = true\nmin_lifetime = 1\nmax_lifetime = 7200\nmax_per_host = 4\nthird_party = true\n",
    ).portmap;
    assert.deepEqual(c, {
      enabled: true,
      natpmp: false,
      pcp: true,
      minLifetime: 1,
      maxLifetime: 7200,
      maxPerHost: 4,
      maxMappings: 0,
      requireNeighbour: true,
      allowedHosts: [],
      thirdParty: true,
    });
  });

  it("names the key of every bad value", () => {
    assert.match(problem("[portmap]\nenabled = 1\n"), /masq\.toml: portmap\.enabled: /);
    assert.match(problem("[portmap]\nmax_lifetime = 0\n"), /portmap\.max_lifetime: /);
    assert.match(problem("[portmap]\nmax_per_host = 1.5\n"), /portmap\.max_per_host: must be a whole number/);
    assert.match(
      problem("[portmap]\nmin_lifetime = 600\nmax_lifetime = 300\n"),
      /portmap\.min_lifetime: 600 s is above/,
    );
    assert.match(problem("[portmap]\nnat_pmp = true\n"), /portmap\.nat_pmp: unknown key/);
  });
});

describe("NAT-PMP with a pool of public addresses", () => {
  it("tells each host the address its mappings (and connections) get: paired pooling", () => {
    const pool = ["198.51.100.100", "198.51.100.101", "198.51.100.102", "198.51.100.103"].map(ip);
    const { svc } = setup({}, { outside: pool });
    for (let h = 2; h < 20; h++) {
      const host = ip(`192.168.0.${h}`);
      const said = decode(svc.handle(Uint8Array.of(0, 0), host)).addr;
      const m = mapReq(2, 1000 + h, 0, 60);
      svc.handle(m, host);
      const grant = svc.live().find((g) => g.inAddr === host);
      assert.equal(said, grant?.outAddr, `host .${h}`);
    }
  });
});
