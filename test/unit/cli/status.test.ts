// `masq status`: one screen from two samples of the counters.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatStatus, workerCount } from "../../../src/cli/status.ts";
import type { StatsReply } from "../../../src/control/format.ts";

function sample(packets: number, dropped: number, queueDrops: number, bytes: number): StatsReply {
  return {
    uptimeSec: 3723,
    mode: "interface",
    publicAddresses: ["198.51.100.1"],
    datapathCpu: 1,
    engine: {
      counters: { packets, dropped, bytes_in: bytes, bytes_out: bytes },
      flows: 1234,
      halfOpen: 0,
      mappings: 1000,
      hosts: 3,
      heldFragments: 0,
      heldFragmentBytes: 0,
      capacity: { flows: 262144, mappings: 131072, hosts: 4096 },
      bytesPerFlow: 134,
    },
    datapath: {},
    device: { kernelQueueDrops: queueDrops },
    reload: { ok: 2, refused: 1, failed: 0 },
  };
}

describe("masq status", () => {
  it("shows mode, address, uptime, table use and rates from two samples", () => {
    const text = formatStatus(sample(1000, 10, 0, 0), sample(21_000, 30, 4, 1_250_000), 2);
    assert.equal(
      text,
      [
        "masq      interface mode, public 198.51.100.1, up 1h 2m 3s",
        "flows     1234 / 262144 (0.5%), mappings 1000 / 131072, hosts 3 / 4096",
        "packets   10.0k/s (10.0 Mbit/s)",
        "drops     12.0/s (engine 10.0/s, TUN queues 2.0/s)",
        "workers   1 (packet loop on CPU 1)",
        "reloads   2 ok, 1 refused, 0 failed",
        "(rates over 2.0 s)",
        "",
      ].join("\n"),
    );
  });

  it("counts the workers stats reports, one when it reports none", () => {
    assert.equal(workerCount(sample(0, 0, 0, 0)), 1);
    assert.equal(workerCount({ ...sample(0, 0, 0, 0), workers: 2 }), 2);
    assert.equal(workerCount({ ...sample(0, 0, 0, 0), workers: [{}, {}, {}] }), 3);
  });

  it("a counter that went backwards (a restart between samples) is no negative rate", () => {
    assert.match(formatStatus(sample(5000, 9, 0, 0), sample(10, 0, 0, 0), 1), /packets {3}0\.0\/s/);
  });
});
