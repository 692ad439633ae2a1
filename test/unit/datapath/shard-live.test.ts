// A reload's settings over engine shards in worker threads (shard-live.ts): every shard takes the
// new policy (its share of the gateway-wide caps) or none keeps it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DEFAULT_ALG_CONFIG } from "../../../src/alg/config.ts";
import { defaultRunConfig } from "../../../src/control/config.ts";
import { type LiveSettings, liveSettingsFor } from "../../../src/control/reload.ts";
import type { ShardClient } from "../../../src/datapath/shard-channel.ts";
import { ShardedLive } from "../../../src/datapath/shard-live.ts";
import { hostWorker } from "../../../src/datapath/steering-model.ts";
import { DROP, FORWARD } from "../../../src/nat/verdicts.ts";
import { ip } from "../../helpers/packets.ts";
import { startShardWorkers } from "./fixtures/shard-workers.ts";

const COUNT = 2;
/** shard-worker.ts's worker 1 refuses settings with this maxFlowsPerHost. */
const REFUSED_FLOWS_PER_HOST = 13;

/** An inside host 192.168.0.x owned by worker `w`, the `nth` of them. */
function hostOf(w: number, nth = 0): string {
  let seen = 0;
  for (let x = 2; x < 255; x++) {
    const a = `192.168.0.${x}`;
    if (hostWorker(ip(a), COUNT) === w && seen++ === nth) return a;
  }
  throw new Error(`no host for worker ${w}`);
}

/** The settings of a run config with `firewall` rules and `limits` changed. */
function settings(change: (c: ReturnType<typeof defaultRunConfig>) => void): LiveSettings {
  const c = defaultRunConfig();
  change(c);
  return { ...liveSettingsFor(c), alg: structuredClone(DEFAULT_ALG_CONFIG) };
}

const blockDns = (c: ReturnType<typeof defaultRunConfig>) => {
  c.firewall = [
    { direction: "outbound", action: "drop", protocol: "udp", destinationPorts: { first: 53, last: 53 } },
  ];
};

function startShards(): { client: ShardClient; stop: () => Promise<void> } {
  const shards = startShardWorkers(COUNT);
  for (let w = 0; w < COUNT; w++) assert.equal(shards.client.callSync(w, "index", undefined, 60_000), w);
  return shards;
}

describe("reload over engine shards", () => {
  let client: ShardClient;
  let stop: () => Promise<void>;
  let sport = 5000;
  const send = (w: number) => client.callSync<number>(w, "send", { src: hostOf(w), sport: sport++ });

  before(() => {
    ({ client, stop } = startShards());
  });
  after(() => stop());

  it("a firewall rule reaches every shard: a new flow of a host on either worker is dropped", () => {
    const live = new ShardedLive(
      client,
      settings(() => undefined),
    );
    for (let w = 0; w < COUNT; w++) assert.equal(send(w), FORWARD);
    live.apply(settings(blockDns));
    for (let w = 0; w < COUNT; w++) assert.equal(send(w), DROP, `worker ${w}`);
    live.apply(settings(() => undefined));
    for (let w = 0; w < COUNT; w++) assert.equal(send(w), FORWARD, `worker ${w}, the rule gone`);
  });

  it("the gateway-wide caps are shared out, the per-host limits stay whole", () => {
    const live = new ShardedLive(
      client,
      settings(() => undefined),
    );
    live.apply(
      settings((c) => {
        c.limits.maxHalfOpen = 1001;
        c.limits.newFlowsPerSec = 300;
        c.limits.maxFlowsPerHost = 77;
      }),
    );
    for (let w = 0; w < COUNT; w++)
      assert.deepEqual(client.callSync(w, "policy"), {
        maxHalfOpen: 501,
        newFlowsPerSec: 150,
        maxFlowsPerHost: 77,
      });
  });

  it("when a worker does not take the settings, the ones that did go back: nothing changed", () => {
    const before = settings(() => undefined);
    const live = new ShardedLive(client, before);
    live.apply(before);
    assert.throws(
      () =>
        live.apply(
          settings((c) => {
            blockDns(c);
            c.limits.maxFlowsPerHost = REFUSED_FLOWS_PER_HOST;
          }),
        ),
      /worker 1 did not take the new settings.*nothing changed/,
    );
    for (let w = 0; w < COUNT; w++) {
      assert.equal(send(w), FORWARD, `worker ${w} runs without the rule`);
      assert.equal(
        client.callSync<{ maxFlowsPerHost: number }>(w, "policy").maxFlowsPerHost,
        before.policy.maxFlowsPerHost,
      );
    }
  });
});
