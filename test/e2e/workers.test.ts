// Several datapath workers on multi-queue TUNs (src/datapath/worker-main.ts), in a namespace of
// their own (test/e2e/fixtures/worker-shards.ts runs them): each inside host's packets are
// translated by the worker the steering model names, the answers to its flows come back to that
// worker (the port's slice), and every worker handles some.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hostWorker } from "../../src/datapath/steering-model.ts";
import { Lab } from "../../src/lab/netns.ts";
import { ip } from "../helpers/packets.ts";

const WORKERS = 2;
const SOURCES = Array.from({ length: 16 }, (_, i) => `10.9.0.${i + 1}`);

describe("datapath workers on multi-queue TUNs", () => {
  let lab: Lab;
  let ns: string;
  before(async () => {
    lab = new Lab({ prefix: `wk${process.pid}` });
    ns = await lab.addNamespace("w");
  });
  after(async () => {
    await lab.destroy();
  });

  it("a host's flows go out and come back on the worker its address hashes to", async () => {
    const args = [WORKERS, SOURCES].map((a) => JSON.stringify(a));
    const out = await lab.run(
      ns,
      [process.execPath, "--import", "tsx", "test/e2e/fixtures/worker-shards.ts", ...args],
      { timeoutMs: 60_000 },
    );
    const got = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as {
      out: number[];
      in: number[];
      packets: number[];
    };
    const want = Array.from(
      { length: WORKERS },
      (_, w) => SOURCES.filter((s) => hostWorker(ip(s), WORKERS) === w).length,
    );
    assert.deepEqual(got.out, want, out);
    // Each answer came back to the worker that sent its flow out: both directions on one worker.
    assert.deepEqual(got.in, want, out);
    for (let w = 0; w < WORKERS; w++) assert.ok(want[w] > 0 && got.packets[w] >= 2 * want[w], out);
  });
});
