// NAT-PMP, PCP and UPnP leases across `masq stop --keep-state`: the grants go into the snapshot
// with the engine's pins and the epoch, and the next run takes them up. A client's mapping keeps
// working, its renewal gets the same external port on the same pin's successor (nothing pinned
// twice), the epoch goes on (RFC 6886 §3.6: one that went back would make clients map again),
// and a UPnP mapping keeps its description and lease.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DEFAULT_ALG_CONFIG } from "../../../src/alg/config.ts";
import { AlgRegistry } from "../../../src/alg/registry.ts";
import { readKeptState, writeSnapshot } from "../../../src/control/keep-state.ts";
import { leasesAtStart, restoreAtStart } from "../../../src/control/restart.ts";
import { defaultEngineConfig } from "../../../src/nat/config.ts";
import { FORWARD, NatEngine } from "../../../src/nat/engine.ts";
import { defaultPortmapConfig } from "../../../src/portmap/config.ts";
import { buildPcpRequest, OPCODE_MAP, PcpResult, parsePcpResponse } from "../../../src/portmap/pcp.ts";
import { PortmapService } from "../../../src/portmap/service.ts";
import { defaultUpnpConfig } from "../../../src/portmap/upnp/config.ts";
import { UpnpMappings } from "../../../src/portmap/upnp/mappings.ts";
import { ip, SYN, tcp } from "../../helpers/packets.ts";
import { P, REMOTE, run } from "../nat/engine-helpers.ts";
import { mapReq } from "../portmap/natpmp-requests.ts";

const A = ip("192.168.0.2");
const T0 = 5_000;
const dir = mkdtempSync(join(tmpdir(), "masq-keep-leases-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function build(portSeed?: number) {
  const e = new NatEngine(
    defaultEngineConfig({
      inside: [{ addr: ip("192.168.0.0"), len: 24 }],
      outside: [ip(P)],
      maxFlows: 1024,
      ...(portSeed !== undefined ? { portSeed } : {}),
    }),
  );
  const algs = new AlgRegistry(e, DEFAULT_ALG_CONFIG);
  e.attachAlg(algs);
  return { e, algs };
}

function service(e: NatEngine, nowMs: () => number, epochStartMs?: number) {
  return new PortmapService({
    engine: e,
    config: { ...defaultPortmapConfig(), enabled: true, minLifetime: 1 },
    insideNetworks: e.config.inside,
    nowMs,
    ...(epochStartMs !== undefined ? { epochStartMs } : {}),
  });
}

function answer(b: Uint8Array | undefined) {
  assert.ok(b, "an answer");
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { result: dv.getUint16(2), epoch: dv.getUint32(4), external: dv.getUint16(10) };
}

const silent = { info: () => undefined, warn: () => undefined };

/** A masq with a NAT-PMP mapping and a UPnP one, stopped with its state kept after 12 s. */
function stopped(file: string) {
  const old = build();
  old.e.tick(T0);
  let now = 1_000;
  const svc = service(old.e, () => now);
  const mapped = answer(svc.handle(mapReq(2, 8080, 0, 3600), A));
  assert.equal(mapped.result, 0);
  const upnp = new UpnpMappings(svc.leases, old.e, { ...defaultUpnpConfig(), enabled: true });
  upnp.add({
    requester: A,
    owner: `ip:${A}`,
    proto: "udp",
    remoteHost: 0,
    externalPort: 41000,
    internalPort: 7000,
    internalClient: A,
    leaseSec: 3600,
    description: "game console",
    anyPort: false,
  });
  now += 12_000;
  old.e.tick(T0 + 12_000);
  writeSnapshot(file, old.e, old.algs, {
    configHash: "h",
    clockMs: T0 + 12_000,
    leases: { grants: svc.leases.live(), epochMs: svc.epochMs() },
  });
  return { external: mapped.external, pins: old.e.pinList() };
}

describe("leases across masq stop --keep-state", () => {
  it("a NAT-PMP mapping keeps working; its renewal keeps the port and the pin count; the epoch goes on", () => {
    const file = join(dir, "natpmp.snapshot");
    const before = stopped(file);
    const kept = readKeptState(file, "h");
    assert.ok(kept);
    assert.equal(kept.header.leases?.grants.length, 2);
    const to = build(kept.header.portSeed);
    // The new process's clock reads 50 ms; masq was down 3 s.
    const offset = restoreAtStart(
      file,
      { ...kept, downMs: 3_000 },
      to.e,
      to.algs,
      () => 50,
      silent as never,
      undefined,
      new Set(["natpmp", "upnp"]),
    );
    assert.ok(offset !== undefined);
    const sansExpiry = (pins: typeof before.pins) => pins.map(({ expiresInSec: _, ...p }) => p);
    assert.deepEqual(
      sansExpiry(to.e.pinList()),
      sansExpiry(before.pins),
      "the lease pins came back, none anew",
    );
    assert.equal(to.e.pinList()[0]?.expiresInSec, (before.pins[0]?.expiresInSec ?? 0) - 3, "3 s went by");
    const start = leasesAtStart(kept, offset);
    assert.ok(start);
    const svc = service(to.e, () => 50, start.epochStartMs);
    svc.leases.adopt(start.grants);
    // The Internet reaches the mapped port before the client asks anything.
    const now = 50 + offset;
    const syn = run(to.e, tcp({ src: REMOTE, dst: P, sport: 9000, dport: before.external, flags: SYN }), now);
    assert.equal(syn.verdict, FORWARD);
    // 12 s before the stop and 3 s down: the epoch says 15, not 0.
    assert.equal(answer(svc.handle(Uint8Array.of(0, 0), A)).epoch, 15);
    const renewed = answer(svc.handle(mapReq(2, 8080, 0, 3600), A));
    assert.equal(renewed.result, 0);
    assert.equal(renewed.external, before.external, "the renewal keeps the external port");
    assert.equal(to.e.pinList().length, before.pins.length, "renewed, not pinned twice");
    assert.equal(svc.counters.mappings_renewed, 1);
    assert.equal(svc.counters.mappings_created, 0);
    // The UPnP mapping is listed as before: its description and its lease, less the time gone.
    const upnp = new UpnpMappings(svc.leases, to.e, { ...defaultUpnpConfig(), enabled: true });
    const [entry] = upnp.list().map((g) => upnp.entry(g));
    assert.equal(entry?.externalPort, 41000);
    assert.equal(entry?.description, "game console");
    assert.ok(entry && entry.leaseSec <= 3600 - 15 && entry.leaseSec > 3600 - 20, `lease ${entry?.leaseSec}`);
  });

  it("a PCP mapping keeps its nonce: its client renews it on the same port, another client may not", () => {
    const nonce = (n: number) => Uint8Array.from({ length: 12 }, (_, i) => n + i);
    const pcpMap = (n: number) =>
      buildPcpRequest({
        opcode: OPCODE_MAP,
        lifetime: 3600,
        clientAddr: A,
        nonce: nonce(n),
        protocol: 17,
        internalPort: 5000,
        suggestedExternalPort: 0,
      });
    const ask = (svc: PortmapService, n: number) => {
      const r = parsePcpResponse(svc.handle(pcpMap(n), A) ?? new Uint8Array());
      assert.ok(r, "a PCP answer");
      return r;
    };
    const old = build();
    old.e.tick(T0);
    const svc = service(old.e, () => 0);
    const first = ask(svc, 1);
    assert.equal(first.result, PcpResult.SUCCESS);
    const file = join(dir, "pcp.snapshot");
    writeSnapshot(file, old.e, old.algs, {
      configHash: "h",
      clockMs: T0,
      leases: { grants: svc.leases.live(), epochMs: svc.epochMs() },
    });
    const kept = readKeptState(file, "h");
    assert.ok(kept);
    const to = build(kept.header.portSeed);
    const offset = restoreAtStart(
      file,
      kept,
      to.e,
      to.algs,
      () => 0,
      silent as never,
      undefined,
      new Set(["pcp"]),
    );
    assert.ok(offset !== undefined);
    const start = leasesAtStart(kept, offset);
    assert.ok(start);
    const again = service(to.e, () => 0, start.epochStartMs);
    again.leases.adopt(start.grants);
    assert.equal(ask(again, 50).result, PcpResult.NOT_AUTHORIZED, "another nonce: not its mapping");
    const renewed = ask(again, 1);
    assert.equal(renewed.result, PcpResult.SUCCESS);
    assert.equal(renewed.externalPort, first.externalPort);
  });

  it("the leases of a protocol the new run does not serve go, pins and all", () => {
    const file = join(dir, "off.snapshot");
    stopped(file);
    const kept = readKeptState(file, "h");
    assert.ok(kept);
    const to = build(kept.header.portSeed);
    restoreAtStart(file, kept, to.e, to.algs, () => 50, silent as never, undefined, new Set(["upnp"]));
    assert.deepEqual(
      to.e.pinList().map((p) => p.origin),
      ["upnp"],
    );
    // Taken up by a run without NAT-PMP: the NAT-PMP grant's pin is gone, so it is left out.
    const svc = service(to.e, () => 50);
    assert.deepEqual(svc.leases.adopt(kept.header.leases?.grants ?? []), { adopted: 1, lapsed: 1 });
  });
});
