import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PinRegistry } from "../../../src/nat/pins.ts";

const pin = (
  mapping: number,
  extra: Partial<{ remoteAddr: number; expiresAtSec: number; oneShot: boolean }> = {},
) => ({
  mapping,
  remoteAddr: 0,
  expiresAtSec: 0,
  oneShot: false,
  origin: "test",
  note: "",
  ...extra,
});

describe("PinRegistry", () => {
  it("counts pins per mapping where the packet path reads them, and removes by id", () => {
    const r = new PinRegistry(8);
    const a = r.add(pin(3))!;
    const b = r.add(pin(3))!;
    assert.notEqual(a.id, b.id);
    assert.equal(r.count[3], 2);
    assert.equal(r.isPinned(3), true);
    assert.equal(r.isPinned(4), false);
    assert.equal(r.remove(a.id), a);
    assert.equal(r.remove(a.id), undefined);
    assert.deepEqual(r.of(3), [b]);
    r.remove(b.id);
    assert.equal(r.isPinned(3), false);
    assert.deepEqual(r.of(3), []);
    assert.equal(r.size, 0);
  });

  it("admits any remote, or only the one it names", () => {
    const r = new PinRegistry(8);
    r.add(pin(1, { remoteAddr: 0x0a000001 }));
    assert.equal(r.admitting(1, 0x0a000002), undefined);
    assert.equal(r.admitting(1, 0x0a000001)?.remoteAddr, 0x0a000001);
    r.add(pin(1));
    assert.equal(r.admitting(1, 0x0a000002)?.remoteAddr, 0);
    assert.equal(r.admitting(2, 0x0a000001), undefined, "another mapping");
  });

  it("refuses a 256th pin on one mapping (the count is a byte)", () => {
    const r = new PinRegistry(2);
    for (let i = 0; i < 255; i++) assert.ok(r.add(pin(0)));
    assert.equal(r.add(pin(0)), undefined);
    assert.equal(r.count[0], 255);
  });

  it("due() returns the pins whose time is up, and keeps the next deadline for a cheap check", () => {
    const r = new PinRegistry(8);
    const early = r.add(pin(0, { expiresAtSec: 10 }))!;
    const late = r.add(pin(1, { expiresAtSec: 20 }))!;
    r.add(pin(2)); // never expires
    assert.equal(r.nextExpirySec, 10);
    assert.deepEqual(r.due(9), []);
    assert.deepEqual(r.due(10), [early]);
    r.remove(early.id);
    assert.equal(r.nextExpirySec, 20);
    assert.equal(r.renew(late.id, 30), true);
    assert.deepEqual(r.due(25), []);
    assert.deepEqual(r.due(30), [late]);
    assert.equal(r.renew(999, 5), false);
  });

  it("renewing to an earlier second brings the next check forward", () => {
    const r = new PinRegistry(8);
    const p = r.add(pin(0, { expiresAtSec: 100 }))!;
    r.renew(p.id, 50);
    assert.equal(r.nextExpirySec, 50);
    assert.deepEqual(r.due(50), [p]);
  });
});
