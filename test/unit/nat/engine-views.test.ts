import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SYN, tcp, u16, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "./engine-helpers.ts";

const A = "192.168.0.2";

describe("read-only views", () => {
  it("lists flows with endpoints, state, idle time and counters, and names every drop reason", () => {
    const e = makeEngine();
    const port = u16(
      run(e, udp({ src: A, dst: REMOTE, sport: 44000, dport: 53, payload: 10 }), 1000).out,
      20,
    );
    run(e, udp({ src: REMOTE, dst: P, sport: 53, dport: port, payload: 100 }), 4000);
    e.tick(9000);
    const [f] = e.flows();
    assert.deepEqual(f.inside, { addr: A, port: 44000 });
    assert.deepEqual(f.outside, { addr: P, port });
    assert.deepEqual(f.remote, { addr: REMOTE, port: 53 });
    assert.equal(f.protocol, "udp");
    assert.equal(f.state, "active");
    assert.equal(f.origin, "outbound");
    assert.equal(f.idleSec, 5);
    assert.equal(f.packetsOut, 1);
    assert.equal(f.packetsIn, 1);
    assert.equal(f.bytesOut, 20 + 8 + 10);
    assert.equal(f.bytesIn, 20 + 8 + 100);
    const s = e.stats();
    for (const k of [
      "drop_no_mapping",
      "drop_filtered",
      "drop_ip_bad_header_checksum",
      "drop_flow_table_full",
    ])
      assert.ok(k in s.counters, k);
    assert.ok(s.bytesPerFlow > 0);
  });

  it("the same packet at any offset of the buffer translates the same", () => {
    const e1 = makeEngine();
    const e2 = makeEngine();
    const pkt = tcp({ src: A, dst: REMOTE, sport: 62001, dport: 80, flags: SYN });
    const big = new Uint8Array(5000);
    big.set(pkt, 4001);
    e1.process(big, 4001, pkt.length, 1000);
    const { out } = run(e2, pkt);
    assert.deepEqual(big.subarray(4001, 4001 + pkt.length), out);
  });
});
