// rtnetlink parsing (src/io/rtnetlink.ts): the kernel's address and link messages as the
// kernel lays them out, and crafted damaged ones, which are skipped and never thrown on.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  dumpRequest,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseRouteMessages,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_NEWADDR,
  RTM_NEWLINK,
} from "../../../src/io/rtnetlink.ts";
import { ip } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";

function attr(type: number, data: Uint8Array): Uint8Array {
  const len = 4 + data.length;
  const b = new Uint8Array((len + 3) & ~3);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, len, true);
  dv.setUint16(2, type, true);
  b.set(data, 4);
  return b;
}
const addr4 = (a: string) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, ip(a), false);
  return b;
};
const str = (s: string) => new Uint8Array([...Buffer.from(s), 0]);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
function message(type: number, body: Uint8Array, seq = 0): Uint8Array {
  const b = new Uint8Array(16 + body.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, b.length, true);
  dv.setUint16(4, type, true);
  dv.setUint32(8, seq, true);
  b.set(body, 16);
  return b;
}
function addressMessage(o: {
  added: boolean;
  ifindex: number;
  address: string;
  len?: number;
  flags?: number;
  family?: number;
}) {
  const head = new Uint8Array(8);
  head[0] = o.family ?? 2;
  head[1] = o.len ?? 24;
  head[2] = o.flags ?? 0;
  head[3] = 0;
  new DataView(head.buffer).setUint32(4, o.ifindex, true);
  return message(
    o.added ? RTM_NEWADDR : RTM_DELADDR,
    concat(head, attr(1, addr4(o.address)), attr(2, addr4(o.address)), attr(3, str("wan0"))),
  );
}
function linkMessage(o: { present: boolean; ifindex: number; name: string; flags: number }) {
  const head = new Uint8Array(16);
  const dv = new DataView(head.buffer);
  dv.setInt32(4, o.ifindex, true);
  dv.setUint32(8, o.flags, true);
  return message(o.present ? RTM_NEWLINK : RTM_DELLINK, concat(head, attr(3, str(o.name))));
}

describe("rtnetlink messages", () => {
  it("reads an address added and removed, with its interface, prefix and label", () => {
    const { events, bad } = parseRouteMessages(
      concat(
        addressMessage({ added: true, ifindex: 7, address: "198.51.100.2" }),
        addressMessage({ added: false, ifindex: 7, address: "198.51.100.2", flags: 1 }),
      ),
    );
    assert.equal(bad, 0);
    assert.deepEqual(events, [
      {
        kind: "address",
        added: true,
        ifindex: 7,
        address: ip("198.51.100.2"),
        prefixLen: 24,
        secondary: false,
        label: "wan0",
      },
      {
        kind: "address",
        added: false,
        ifindex: 7,
        address: ip("198.51.100.2"),
        prefixLen: 24,
        secondary: true,
        label: "wan0",
      },
    ]);
  });

  it("reads a link's name and its up and running flags; the end of a dump; an error answer", () => {
    const err = new Uint8Array(20);
    new DataView(err.buffer).setInt32(0, -16, true);
    const { events } = parseRouteMessages(
      concat(
        linkMessage({ present: true, ifindex: 3, name: "ppp0", flags: 0x41 }),
        linkMessage({ present: false, ifindex: 3, name: "ppp0", flags: 0 }),
        message(NLMSG_DONE, new Uint8Array(4), 9),
        message(NLMSG_ERROR, err, 10),
      ),
    );
    assert.deepEqual(events, [
      { kind: "link", present: true, ifindex: 3, name: "ppp0", up: true, running: true },
      { kind: "link", present: false, ifindex: 3, name: "ppp0", up: false, running: false },
      { kind: "done", seq: 9, errno: 0 },
      { kind: "error", seq: 10, errno: 16 },
    ]);
  });

  it("ignores IPv6 addresses and message types it does not follow", () => {
    const { events, bad } = parseRouteMessages(
      concat(
        addressMessage({ added: true, ifindex: 7, address: "1.2.3.4", family: 10 }),
        message(24, new Uint8Array(12)),
      ),
    );
    assert.deepEqual(events, []);
    assert.equal(bad, 0);
  });

  it("skips malformed messages: a short body, an address of the wrong size, a length past the datagram", () => {
    const good = addressMessage({ added: true, ifindex: 7, address: "198.51.100.2" });
    const shortBody = message(RTM_NEWADDR, new Uint8Array(4));
    const head = new Uint8Array(8);
    head[0] = 2;
    const wrongSize = message(RTM_NEWADDR, concat(head, attr(2, new Uint8Array(3))));
    const noAddress = message(RTM_NEWADDR, head);
    const { events, bad } = parseRouteMessages(concat(shortBody, wrongSize, noAddress, good));
    assert.equal(bad, 3);
    assert.equal(events.length, 1);
    const overlong = good.slice();
    new DataView(overlong.buffer).setUint32(0, 4096, true);
    assert.deepEqual(parseRouteMessages(concat(good, overlong)).events.length, 1);
    assert.equal(parseRouteMessages(good.subarray(0, good.length - 3)).bad, 1, "truncated");
    assert.deepEqual(parseRouteMessages(new Uint8Array(0)), { events: [], bad: 0 });
  });

  it("never throws, whatever the bytes (property)", () => {
    const real = concat(
      addressMessage({ added: true, ifindex: 7, address: "198.51.100.2" }),
      linkMessage({ present: true, ifindex: 7, name: "wan0", flags: 1 }),
    );
    assertProperty(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.array(fc.tuple(fc.nat(real.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        fc.nat(real.length),
        (noise, flips, cut) => {
          parseRouteMessages(noise);
          const b = real.slice(0, cut);
          for (const [at, v] of flips) if (at < b.length) b[at] = v;
          const { events } = parseRouteMessages(b);
          for (const ev of events) if (ev.kind === "address") assert.ok(ev.prefixLen <= 32);
        },
      ),
      500,
    );
  });

  it("builds dump requests the kernel takes (header, flags, family)", () => {
    const a = dumpRequest(RTM_GETADDR, 5);
    const dv = new DataView(a.buffer);
    assert.equal(dv.getUint32(0, true), a.length);
    assert.equal(dv.getUint16(4, true), RTM_GETADDR);
    assert.equal(dv.getUint16(6, true), 0x301);
    assert.equal(dv.getUint32(8, true), 5);
    assert.equal(a[16], 2, "AF_INET");
    assert.equal(dumpRequest(RTM_GETLINK, 6).length, 32);
  });
});
