// Following the outside interface's address (src/control/wan-address.ts, wan-follow.ts): what
// the kernel's events mean for masq, and the dumps that start and resync the picture.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WanAddressState, type WanTransition } from "../../../src/control/wan-address.ts";
import { WanFollower } from "../../../src/control/wan-follow.ts";
import type { RouteEvent } from "../../../src/io/rtnetlink.ts";
import { ip } from "../../helpers/packets.ts";

const OLD = ip("198.51.100.2");
const NEW = ip("198.51.100.77");
const link = (ifindex: number, name: string, present = true): RouteEvent => ({
  kind: "link",
  present,
  ifindex,
  name,
  up: true,
  running: true,
});
const addr = (ifindex: number, address: number, added = true, secondary = false): RouteEvent => ({
  kind: "address",
  added,
  ifindex,
  address,
  prefixLen: 24,
  secondary,
  label: "",
});

function stateWith(initial: number, events: RouteEvent[]): WanAddressState {
  const s = new WanAddressState("wan0", initial);
  s.learn(events);
  return s;
}

describe("the outside interface's address", () => {
  it("a dump that shows the address masq started with changes nothing", () => {
    const s = stateWith(OLD, [link(4, "wan0"), addr(4, OLD)]);
    assert.equal(s.decide(), undefined);
    assert.equal(s.current, OLD);
  });

  it("DHCP moves it: old deleted (lost), new added (changed from old)", () => {
    const s = stateWith(OLD, [link(4, "wan0"), addr(4, OLD)]);
    s.decide();
    s.learn([addr(4, OLD, false)]);
    assert.deepEqual(s.decide(), { kind: "lost", address: OLD });
    assert.equal(s.current, 0);
    s.learn([addr(4, NEW)]);
    assert.deepEqual(s.decide(), { kind: "changed", old: OLD, address: NEW });
    assert.equal(s.current, NEW);
  });

  it("a new address added before the old one goes: the change comes when the old one goes", () => {
    const s = stateWith(OLD, [link(4, "wan0"), addr(4, OLD)]);
    s.learn([addr(4, NEW, true, true)]);
    assert.equal(s.decide(), undefined, "a secondary address changes nothing");
    s.learn([addr(4, OLD, false)]);
    assert.deepEqual(s.decide(), { kind: "changed", old: OLD, address: NEW });
  });

  it("a flap that brings back the same address restores it, flushing nothing", () => {
    const s = stateWith(OLD, [link(4, "wan0"), addr(4, OLD)]);
    s.learn([addr(4, OLD, false)]);
    assert.equal(s.decide()?.kind, "lost");
    s.learn([addr(4, OLD)]);
    assert.deepEqual(s.decide(), { kind: "restored", address: OLD });
  });

  it("starts with none (PPP not dialled) and takes the first that comes; other interfaces do not count", () => {
    const s = stateWith(0, [link(4, "wan0"), link(5, "lan0"), addr(5, ip("192.168.0.1"))]);
    assert.equal(s.decide(), undefined);
    s.learn([addr(4, NEW)]);
    assert.deepEqual(s.decide(), { kind: "changed", old: 0, address: NEW });
  });

  it("the interface going away and coming back with another index (PPP redial)", () => {
    const s = stateWith(OLD, [link(4, "wan0"), addr(4, OLD)]);
    s.learn([link(4, "wan0", false)]);
    assert.equal(s.decide()?.kind, "lost");
    s.learn([link(9, "wan0"), addr(9, OLD)]);
    assert.equal(s.decide()?.kind, "restored");
  });
});

/** A socket that answers dumps with what the test says the kernel holds. */
function fakeKernel() {
  let deliver: (buf: Uint8Array | null, errno: number) => void = () => {};
  const sent: number[] = [];
  return {
    sent,
    open: (on: (buf: Uint8Array | null, errno: number) => void) => {
      deliver = on;
      return {
        send: (b: Uint8Array) => {
          sent.push(new DataView(b.buffer, b.byteOffset).getUint16(4, true));
          return true;
        },
        close: () => {},
      };
    },
    deliver: (b: Uint8Array | null, errno = 0) => deliver(b, errno),
  };
}
function nl(type: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(16 + body.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, b.length, true);
  dv.setUint16(4, type, true);
  b.set(body, 16);
  return b;
}
const done = () => nl(3, new Uint8Array(4));
function linkMsg(ifindex: number, name: string): Uint8Array {
  const body = new Uint8Array(16 + 4 + ((name.length + 1 + 3) & ~3));
  const dv = new DataView(body.buffer);
  dv.setInt32(4, ifindex, true);
  dv.setUint16(16, 4 + name.length + 1, true);
  dv.setUint16(18, 3, true);
  body.set(Buffer.from(name), 20);
  return nl(16, body);
}
function addrMsg(type: 20 | 21, ifindex: number, a: number): Uint8Array {
  const body = new Uint8Array(8 + 8);
  const dv = new DataView(body.buffer);
  body[0] = 2;
  body[1] = 24;
  dv.setUint32(4, ifindex, true);
  dv.setUint16(8, 8, true);
  dv.setUint16(10, 2, true);
  dv.setUint32(12, a, false);
  return nl(type, body);
}
const silent = { info() {}, warn() {} };

/** A follower of wan0 (masq started on OLD) over a fake kernel, and the transitions it hands over. */
function follow() {
  const k = fakeKernel();
  const seen: WanTransition[] = [];
  const f = new WanFollower({
    state: new WanAddressState("wan0", OLD),
    open: k.open,
    onTransition: async (t) => {
      seen.push(t);
    },
    log: silent,
  });
  return { k, seen, f };
}

describe("WanFollower", () => {
  it("dumps links then addresses, then hands each transition over in order; ENOBUFS dumps again", async () => {
    const { k, seen, f } = follow();
    assert.deepEqual(k.sent, [18]);
    k.deliver(linkMsg(4, "wan0"));
    k.deliver(done());
    assert.deepEqual(k.sent, [18, 22]);
    k.deliver(addrMsg(20, 4, OLD));
    k.deliver(done());
    await f.synced;
    k.deliver(addrMsg(21, 4, OLD));
    k.deliver(addrMsg(20, 4, NEW));
    k.deliver(new Uint8Array([1, 2, 3]));
    await f.idle();
    assert.deepEqual(seen, [
      { kind: "lost", address: OLD },
      { kind: "changed", old: OLD, address: NEW },
    ]);
    assert.equal(f.stats.malformed, 0, "three bytes are not even a header");
    k.deliver(null, 105);
    assert.deepEqual(k.sent, [18, 22, 18]);
    assert.equal(f.stats.overruns, 1);
    k.deliver(linkMsg(4, "wan0"));
    k.deliver(done());
    k.deliver(addrMsg(20, 4, NEW));
    k.deliver(done());
    await f.idle();
    assert.equal(seen.length, 2, "the resync found what masq already follows");
    f.close();
  });

  it("events lost during a dump: it dumps again once that one ends, and decides only then", async () => {
    const { k, seen, f } = follow();
    k.deliver(linkMsg(4, "wan0"));
    k.deliver(null, 105);
    k.deliver(done());
    k.deliver(addrMsg(20, 4, NEW));
    k.deliver(done());
    assert.deepEqual(k.sent, [18, 22, 18], "a second dump");
    await f.idle();
    assert.deepEqual(seen, [], "nothing decided from the dump that lost events");
    k.deliver(linkMsg(4, "wan0"));
    k.deliver(done());
    k.deliver(addrMsg(20, 4, NEW));
    k.deliver(done());
    await f.synced;
    await f.idle();
    assert.deepEqual(seen, [{ kind: "changed", old: OLD, address: NEW }]);
    f.close();
  });
});
