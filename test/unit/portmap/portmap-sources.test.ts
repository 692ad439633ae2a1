// NAT-PMP/PCP requests only from hosts the gateway sees on the inside (the neighbour table), the
// per-host quota per link-layer address, the global cap, and the engine's port quota beneath.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { defaultPortmapConfig, type PortmapConfig } from "../../../src/portmap/config.ts";
import { NatPmpResult } from "../../../src/portmap/natpmp.ts";
import { NeighbourSources, parseProcNetArp, type RequestSources } from "../../../src/portmap/neighbours.ts";
import { buildPcpRequest, OPCODE_MAP, PcpResult, parsePcpResponse } from "../../../src/portmap/pcp.ts";
import { PortmapService } from "../../../src/portmap/service.ts";
import { ip } from "../../helpers/packets.ts";
import { makeEngine } from "../nat/engine-helpers.ts";

const MAC_A = "02:00:00:00:00:0a";
const MAC_B = "02:00:00:00:00:0b";
const ARP = [
  "IP address       HW type     Flags       HW address            Mask     Device",
  `192.168.0.2      0x1         0x2         ${MAC_A}     *        lan0`,
  `192.168.0.3      0x1         0x2         ${MAC_B.toUpperCase()}     *        lan0`,
  // Forged with A-box's address in an ARP request: the gateway learnt A-box's link-layer address.
  `192.168.0.50     0x1         0x2         ${MAC_A}     *        lan0`,
  "192.168.0.60     0x1         0x0         00:00:00:00:00:00     *        lan0",
  "192.168.0.61     0x1         0x6         02:00:00:00:00:3d     *        lan0",
  "192.168.1.7      0x1         0x2         02:00:00:00:00:77     *        lan1",
  "garbage",
  "300.1.1.1        0x1         0x2         02:00:00:00:00:01     *        lan0",
  "",
].join("\n");

const A = ip("192.168.0.2");
const B = ip("192.168.0.3");
const FORGED_A = ip("192.168.0.50");

function natpmpMap(internal: number, lifetime = 3600, op: 1 | 2 = 2): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[1] = op;
  dv.setUint16(4, internal);
  dv.setUint32(8, lifetime);
  return b;
}

const result = (b: Uint8Array | undefined) => {
  assert.ok(b, "an answer");
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(2);
};

async function neighbours(text = ARP, over = {}) {
  const n = new NeighbourSources({ read: async () => text, ...over });
  await n.ready(A, "lan0");
  return n;
}

function service(sources: RequestSources | undefined, over: Partial<PortmapConfig> = {}, engineOver = {}) {
  const engine = makeEngine({ inside: [{ addr: ip("192.168.0.0"), len: 16 }], ...engineOver });
  engine.tick(1000);
  const svc = new PortmapService({
    engine,
    config: { ...defaultPortmapConfig(), enabled: true, minLifetime: 1, ...over },
    insideNetworks: engine.config.inside,
    nowMs: () => 0,
    ...(sources ? { sources } : {}),
  });
  return { engine, svc };
}

describe("the neighbour table (/proc/net/arp)", () => {
  it("keeps the complete entries by device, with lower-case link-layer addresses", () => {
    const t = parseProcNetArp(ARP);
    assert.deepEqual([...(t.get("lan0")?.keys() ?? [])], [A, B, FORGED_A, ip("192.168.0.61")]);
    assert.equal(t.get("lan0")?.get(B), MAC_B, "lower case");
    assert.equal(t.get("lan0")?.has(ip("192.168.0.60")), false, "incomplete: no link-layer address");
    assert.equal(t.get("lan1")?.get(ip("192.168.1.7")), "02:00:00:00:00:77");
  });

  it("identifies by link-layer address on the request's interface; allowed hosts by address; others not", async () => {
    const n = await neighbours(ARP, { allowed: [{ addr: ip("10.1.0.0"), len: 16 }] });
    assert.equal(n.identify(A, "lan0"), `mac:${MAC_A}`);
    assert.equal(n.identify(FORGED_A, "lan0"), `mac:${MAC_A}`, "the same host, whatever address it claims");
    assert.equal(n.identify(ip("192.168.1.7"), "lan0"), undefined, "a neighbour of another interface");
    assert.equal(n.identify(ip("192.168.1.7"), undefined), "mac:02:00:00:00:00:77");
    assert.equal(n.identify(ip("192.168.0.60"), "lan0"), undefined);
    assert.equal(n.identify(ip("10.1.2.3"), "lan0"), `ip:${ip("10.1.2.3")}`);
  });

  it("a miss reads the table again, once for everyone who waits, and not more often than the interval", async () => {
    let text = ARP;
    const n = new NeighbourSources({ read: async () => text, minIntervalMs: 30, maxAgeMs: 60_000 });
    await n.ready(A, "lan0");
    assert.equal(n.reads, 1);
    await n.ready(A, "lan0");
    assert.equal(n.reads, 1, "a fresh hit needs no read");
    text = `${ARP}192.168.0.9      0x1         0x2         02:00:00:00:00:09     *        lan0\n`;
    const forged = Array.from({ length: 50 }, (_, i) => n.ready(ip(`192.168.2.${i}`), "lan0"));
    await Promise.all([...forged, n.ready(ip("192.168.0.9"), "lan0")]);
    assert.equal(n.reads, 2, "51 misses, one read");
    assert.equal(n.identify(ip("192.168.0.9"), "lan0"), "mac:02:00:00:00:00:09", "a new host is found");
  });

  it("bounds the requests waiting for a read; an unreadable table makes nobody a neighbour", async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let errors = 0;
    let fail = false;
    const n = new NeighbourSources({
      read: async () => {
        await gate;
        if (fail) throw new Error("EACCES");
        return ARP;
      },
      maxWaiting: 2,
      minIntervalMs: 0,
      onError: () => errors++,
    });
    const waiting = [n.ready(A, "lan0"), n.ready(B, "lan0")];
    let third = false;
    await n.ready(ip("192.168.0.77"), "lan0").then(() => {
      third = true;
    });
    assert.equal(third, true, "the third is answered at once, from the snapshot there is");
    release();
    await Promise.all(waiting);
    assert.equal(n.identify(A, "lan0"), `mac:${MAC_A}`);
    fail = true;
    await n.ready(ip("192.168.0.78"), "lan0");
    await n.ready(ip("192.168.0.79"), "lan0");
    assert.equal(n.identify(A, "lan0"), undefined, "fail closed");
    assert.equal(errors, 1, "told once");
  });
});

describe("NAT-PMP/PCP requests from hosts the gateway sees", () => {
  it("a forged source that is no neighbour gets not authorized (NAT-PMP and PCP), counted, and nothing is mapped", async () => {
    const { engine, svc } = service(await neighbours());
    const forged = ip("192.168.0.100");
    assert.equal(result(svc.handle(natpmpMap(8080), forged, "lan0")), NatPmpResult.NOT_AUTHORIZED);
    assert.equal(result(svc.handle(Uint8Array.of(0, 0), forged, "lan0")), NatPmpResult.NOT_AUTHORIZED);
    const pcp = svc.handle(
      buildPcpRequest({
        opcode: OPCODE_MAP,
        lifetime: 600,
        clientAddr: forged,
        nonce: new Uint8Array(12),
        protocol: 6,
        internalPort: 80,
        suggestedExternalPort: 0,
      }),
      forged,
      "lan0",
    );
    assert.equal(parsePcpResponse(pcp!)?.result, PcpResult.NOT_AUTHORIZED);
    assert.equal(svc.stats().refused_not_neighbour, 3);
    assert.equal(engine.pinList().length, 0);
    assert.equal(
      result(svc.handle(natpmpMap(8080), A, "lan0")),
      NatPmpResult.SUCCESS,
      "the real host still maps",
    );
  });

  it("answers to sources with no neighbour entry are rate-limited (they wait in the kernel for ARP); all are counted", async () => {
    const { svc } = service(await neighbours());
    let answered = 0;
    for (let i = 0; i < 30; i++)
      if (svc.handle(natpmpMap(8080), ip(`192.168.3.${i}`), "lan0") !== undefined) answered++;
    assert.equal(answered, 10);
    assert.equal(svc.stats().refused_not_neighbour, 30);
    assert.equal(svc.stats().refused_not_answered, 20);
    assert.equal(
      result(svc.handle(natpmpMap(8080), A, "lan0")),
      NatPmpResult.SUCCESS,
      "neighbours are answered",
    );
  });

  it("addresses with one link-layer address share one quota", async () => {
    const { svc } = service(await neighbours(), { maxPerHost: 3 });
    assert.equal(result(svc.handle(natpmpMap(1000), A, "lan0")), 0);
    assert.equal(result(svc.handle(natpmpMap(1001), A, "lan0")), 0);
    assert.equal(result(svc.handle(natpmpMap(1000), FORGED_A, "lan0")), 0);
    assert.equal(result(svc.handle(natpmpMap(1001), FORGED_A, "lan0")), NatPmpResult.OUT_OF_RESOURCES);
    assert.equal(result(svc.handle(natpmpMap(1001), B, "lan0")), 0, "another host has its own");
  });

  it("without a neighbour check (require_neighbour = false), every inside address counts as a host", () => {
    const { svc } = service(undefined, { maxPerHost: 1 });
    assert.equal(result(svc.handle(natpmpMap(1000), A)), 0);
    assert.equal(result(svc.handle(natpmpMap(1000), FORGED_A)), 0);
  });
});

describe("caps on port-mapping mappings", () => {
  it("all hosts together hold at most max_mappings per protocol; refused as out of resources / NO_RESOURCES, counted", async () => {
    const { svc } = service(undefined, { maxMappings: 2 });
    assert.equal(result(svc.handle(natpmpMap(1000), A)), 0);
    assert.equal(result(svc.handle(natpmpMap(1000), B)), 0);
    assert.equal(result(svc.handle(natpmpMap(1000), ip("192.168.0.4"))), NatPmpResult.OUT_OF_RESOURCES);
    assert.equal(result(svc.handle(natpmpMap(1000, 3600, 1), ip("192.168.0.4"))), 0, "UDP has its own cap");
    assert.equal(result(svc.handle(natpmpMap(1000, 3600), A)), 0, "a renewal is not a new mapping");
    const pcp = svc.handle(
      buildPcpRequest({
        opcode: OPCODE_MAP,
        lifetime: 600,
        clientAddr: ip("192.168.0.5"),
        nonce: new Uint8Array(12),
        protocol: 6,
        internalPort: 80,
        suggestedExternalPort: 0,
      }),
      ip("192.168.0.5"),
    );
    assert.equal(parsePcpResponse(pcp!)?.result, PcpResult.NO_RESOURCES);
    assert.equal(svc.stats().refused_global_cap, 2);
  });

  it("by default the cap is a quarter of the protocol's range (at least 64)", () => {
    const range = { first: 61000, last: 61255 }; // 256 ports: 64
    const { svc } = service(
      undefined,
      { maxPerHost: 1000 },
      { ports: { tcp: range, udp: range, icmp: range } },
    );
    for (let i = 0; i < 64; i++)
      assert.equal(result(svc.handle(natpmpMap(2000 + i), ip(`192.168.1.${i + 1}`))), 0, `mapping ${i}`);
    assert.equal(result(svc.handle(natpmpMap(3000), A)), NatPmpResult.OUT_OF_RESOURCES);
  });

  it("the engine's port quota applies beneath: USER_EX_QUOTA / out of resources", () => {
    const { svc } = service(undefined, {}, { maxPortsPerHost: 2 });
    assert.equal(result(svc.handle(natpmpMap(1000), A)), 0);
    assert.equal(result(svc.handle(natpmpMap(1001), A)), 0);
    assert.equal(result(svc.handle(natpmpMap(1002), A)), NatPmpResult.OUT_OF_RESOURCES);
    const pcp = svc.handle(
      buildPcpRequest({
        opcode: OPCODE_MAP,
        lifetime: 600,
        clientAddr: A,
        nonce: new Uint8Array(12),
        protocol: 6,
        internalPort: 80,
        suggestedExternalPort: 0,
      }),
      A,
    );
    assert.equal(parsePcpResponse(pcp!)?.result, PcpResult.USER_EX_QUOTA);
  });

  it("[portmap] reads require_neighbour, allowed_hosts and max_mappings, naming a bad key", () => {
    const cfg = (text: string) =>
      resolveRunConfig({ inside: ["lan0"], outside: "wan0", config: "masq.toml" }, () => text).portmap;
    const d = cfg("");
    assert.deepEqual([d.requireNeighbour, d.allowedHosts, d.maxMappings], [true, [], 0]);
    const c = cfg(
      '[portmap]\nrequire_neighbour = false\nallowed_hosts = ["10.1.0.0/16", "10.2.3.4"]\nmax_mappings = 100\n',
    );
    assert.deepEqual(
      [c.requireNeighbour, c.allowedHosts, c.maxMappings],
      [
        false,
        [
          { addr: ip("10.1.0.0"), len: 16 },
          { addr: ip("10.2.3.4"), len: 32 },
        ],
        100,
      ],
    );
    assert.throws(
      () => cfg('[portmap]\nallowed_hosts = ["10.1.0.0/33"]\n'),
      /masq\.toml: portmap\.allowed_hosts\.0: /,
    );
    assert.throws(() => cfg("[portmap]\nmax_mappings = 0\n"), /portmap\.max_mappings: /);
  });
});
