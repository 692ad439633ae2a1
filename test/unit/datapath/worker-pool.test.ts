import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { workerCpus } from "../../../src/control/worker-run.ts";
import { mergeDatapathStats, shardConfig } from "../../../src/datapath/worker-pool.ts";
import { defaultEngineConfig } from "../../../src/nat/config.ts";

describe("worker pool: shards' configuration and figures", () => {
  it("shares the gateway's capacities and global rate out, keeps the per-host limits", () => {
    const c = defaultEngineConfig({ mode: "interface", maxFlows: 100_001, newFlowsPerSec: 999 });
    const s = shardConfig(c, 2);
    assert.equal(s.maxFlows, 50_001);
    assert.equal(s.maxMappings, Math.ceil(c.maxMappings / 2));
    assert.equal(s.maxHosts, Math.ceil(c.maxHosts / 2));
    assert.equal(s.maxHalfOpen, Math.ceil(c.maxHalfOpen / 2));
    assert.equal(s.newFlowsPerSec, 500);
    assert.equal(s.maxFlowsPerHost, c.maxFlowsPerHost);
    assert.equal(s.newFlowsPerSecPerHost, c.newFlowsPerSecPerHost);
    assert.equal(shardConfig({ ...c, newFlowsPerSec: 0 }, 2).newFlowsPerSec, 0, "no limit stays none");
  });

  it("adds the workers' datapath counters; the largest batch is any worker's largest", () => {
    const one = { batches: 2, packets: 10, written: 9, writeFailures: 1, largestBatch: 7, coalesced: 3 };
    const two = { batches: 3, packets: 5, written: 5, writeFailures: 0, largestBatch: 4, coalesced: 1 };
    assert.deepEqual(mergeDatapathStats([one, two]), {
      batches: 5,
      packets: 15,
      written: 14,
      writeFailures: 1,
      largestBatch: 7,
      coalesced: 4,
    });
  });

  it("pins the workers to the allowed CPUs in order, round robin", () => {
    assert.deepEqual(workerCpus(2, [3, 1]), [1, 3]);
    assert.deepEqual(workerCpus(3, [0, 1]), [0, 1, 0]);
  });
});
