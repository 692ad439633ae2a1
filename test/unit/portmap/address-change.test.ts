// NAT-PMP/PCP when interface mode's public address changes: the epoch starts again (RFC 6886
// §3.6, RFC 6887 §8.5), the address answered and announced is the new one, and a mapping renews
// on it with its port; without an address NAT-PMP answers network failure.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defaultPortmapConfig } from "../../../src/portmap/config.ts";
import { NatPmpResult } from "../../../src/portmap/natpmp.ts";
import { PortmapService } from "../../../src/portmap/service.ts";
import { ip } from "../../helpers/packets.ts";
import { makeEngine, P } from "../nat/engine-helpers.ts";

const A = ip("192.168.0.2");
const NEW = ip("198.51.100.77");

function setup() {
  const engine = makeEngine({ mode: "interface" });
  engine.tick(1000);
  let now = 5000;
  const svc = new PortmapService({
    engine,
    config: { ...defaultPortmapConfig(), enabled: true },
    insideNetworks: engine.config.inside,
    nowMs: () => now,
  });
  return { engine, svc, advance: (ms: number) => (now += ms) };
}
const dv = (b: Uint8Array | undefined) => {
  assert.ok(b);
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
};
function mapTcp(internal: number, lifetime: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  b[1] = 2;
  v.setUint16(4, internal);
  v.setUint16(6, internal);
  v.setUint32(8, lifetime);
  return b;
}

describe("port mapping when the public address changes", () => {
  it("restarts the epoch, answers and announces the new address, and renews a mapping on it", () => {
    const { engine, svc, advance } = setup();
    const granted = dv(svc.handle(mapTcp(8080, 3600), A));
    assert.equal(granted.getUint16(2), NatPmpResult.SUCCESS);
    const port = granted.getUint16(10);
    advance(40_000);
    assert.equal(dv(svc.handle(Uint8Array.of(0, 0), A)).getUint32(4), 40);

    engine.changePublicAddress(NEW);
    svc.addressChanged(ip(P), NEW);
    const answer = dv(svc.handle(Uint8Array.of(0, 0), A));
    assert.equal(answer.getUint32(4), 0, "epoch 0: clients map again");
    assert.equal(answer.getUint32(8), NEW);
    const natpmp = svc.announcements().find((a) => a.msg[0] === 0);
    assert.equal(dv(natpmp?.msg).getUint32(8), NEW);
    assert.ok(
      svc.announcements().some((a) => a.msg[0] === 2),
      "a PCP ANNOUNCE too",
    );

    const renewed = dv(svc.handle(mapTcp(8080, 3600), A));
    assert.equal(
      renewed.getUint16(2),
      NatPmpResult.SUCCESS,
      "the renewal is not refused as mapped elsewhere",
    );
    assert.equal(renewed.getUint16(10), port, "same port on the new address");
    assert.equal(engine.pinList().length, 1);
    assert.equal(engine.pinList()[0].outside.addr, "198.51.100.77");
  });

  it("without an address: network failure for the address and for mappings, and no address announced", () => {
    const { engine, svc } = setup();
    engine.setAddressless(true);
    assert.equal(dv(svc.handle(Uint8Array.of(0, 0), A)).getUint16(2), NatPmpResult.NETWORK_FAILURE);
    assert.ok(svc.announcements().every((a) => a.msg[0] !== 0));
    const refused = dv(svc.handle(mapTcp(8080, 3600), A));
    assert.equal(refused.getUint16(2), NatPmpResult.NETWORK_FAILURE, "no mapping on no address");
    assert.equal(engine.pinList().length, 0);
  });
});
