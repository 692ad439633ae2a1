// Hairpinning in every filtering mode (RFC 4787 REQ-9, RFC 5382 REQ-8): a packet from one inside
// host to another's public endpoint comes from inside, so the inbound filtering, which protects
// the inside from the Internet, does not apply to it; the firewall rules still do.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Filtering } from "../../../src/nat/config.ts";
import { C_HAIRPINNED, D_FILTERED, D_FIREWALL_DROP, D_NO_MAPPING } from "../../../src/nat/counters.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import { formatIpv4 as ipText } from "../../../src/packet/addr.ts";
import { checksumProblems, ip, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
const FILTERINGS: Filtering[] = ["endpoint-independent", "address-dependent", "address-port-dependent"];
/** Pool mode with several addresses: A and B may be paired with different ones (RFC 4787 REQ-2). */
const POOL = [P, "198.51.100.3", "198.51.100.4", "198.51.100.5"];

const setups = [
  { name: "interface mode", over: { mode: "interface" as const } },
  { name: "pool mode", over: { mode: "pool" as const, outside: POOL.map(ip) } },
];

for (const { name, over } of setups) {
  for (const filtering of FILTERINGS) {
    describe(`hairpinning, ${filtering} filtering, ${name}`, () => {
      it("B reaches A's UDP mapping first, though A only ever sent to a remote; A's answer reaches B", () => {
        const e = makeEngine({ ...over, filtering });
        const aOut = run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 3478 })).out;
        const aPublic = u32(aOut, 12);
        const aPort = u16(aOut, 20);
        const first = run(e, udp({ src: B, dst: ipText(aPublic), sport: 6000, dport: aPort }));
        assert.equal(first.verdict, FORWARD, `dropped: ${e.lastDrop}`);
        assert.equal(u32(first.out, 16), ip(A));
        assert.equal(u16(first.out, 22), 5000);
        // A sees B as B's public endpoint.
        const bPublic = u32(first.out, 12);
        const bPort = u16(first.out, 20);
        assert.ok(POOL.map(ip).includes(bPublic));
        assert.deepEqual(checksumProblems(first.out), []);
        const back = run(e, udp({ src: A, dst: ipText(bPublic), sport: 5000, dport: bPort }));
        assert.equal(back.verdict, FORWARD, `dropped: ${e.lastDrop}`);
        assert.equal(u32(back.out, 16), ip(B));
        assert.equal(u16(back.out, 22), 6000);
        assert.equal(u32(back.out, 12), aPublic);
        assert.equal(u16(back.out, 20), aPort);
        assert.equal(e.counters[C_HAIRPINNED], 2);
      });

      it("B's SYN reaches A's TCP mapping first (A only connected to a remote)", () => {
        const e = makeEngine({ ...over, filtering });
        const aOut = run(e, tcp({ src: A, dst: REMOTE, sport: 7000, dport: 80, flags: SYN })).out;
        const syn = run(
          e,
          tcp({ src: B, dst: ipText(u32(aOut, 12)), sport: 8000, dport: u16(aOut, 20), flags: SYN }),
        );
        assert.equal(syn.verdict, FORWARD, `dropped: ${e.lastDrop}`);
        assert.equal(u32(syn.out, 16), ip(A));
        assert.equal(u16(syn.out, 22), 7000);
      });

      it("the same host's second socket reaches its first socket's mapping (what turnutils_natdiscovery -H tries)", () => {
        const e = makeEngine({ ...over, filtering });
        const first = run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 3478 })).out;
        const r = run(e, udp({ src: A, dst: ipText(u32(first, 12)), sport: 5001, dport: u16(first, 20) }));
        assert.equal(r.verdict, FORWARD, `dropped: ${e.lastDrop}`);
        assert.equal(u32(r.out, 16), ip(A));
        assert.equal(u16(r.out, 22), 5000);
      });

      it("the filtering still applies to the Internet, and a hairpin to no mapping is still dropped", () => {
        const e = makeEngine({ ...over, filtering });
        const aOut = run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 3478 })).out;
        const stranger = run(
          e,
          udp({ src: "203.0.113.77", dst: ipText(u32(aOut, 12)), sport: 9, dport: u16(aOut, 20) }),
        );
        if (filtering === "endpoint-independent") assert.equal(stranger.verdict, FORWARD);
        else {
          assert.equal(stranger.verdict, DROP);
          assert.equal(e.lastDrop, D_FILTERED);
        }
        const nowhere = run(
          e,
          udp({ src: B, dst: ipText(u32(aOut, 12)), sport: 6000, dport: u16(aOut, 20) ^ 1 }),
        );
        assert.equal(nowhere.verdict, DROP);
        assert.equal(e.lastDrop, D_NO_MAPPING);
      });

      it("the firewall's inbound rules still apply to hairpinned traffic", () => {
        const e = makeEngine({
          ...over,
          filtering,
          firewall: [
            { direction: "inbound", action: "drop", protocol: "udp", destination: { addr: ip(A), len: 32 } },
          ],
        });
        const aOut = run(e, udp({ src: A, dst: REMOTE, sport: 5000, dport: 3478 })).out;
        const r = run(e, udp({ src: B, dst: ipText(u32(aOut, 12)), sport: 6000, dport: u16(aOut, 20) }));
        assert.equal(r.verdict, DROP);
        assert.equal(e.lastDrop, D_FIREWALL_DROP);
      });
    });
  }
}
