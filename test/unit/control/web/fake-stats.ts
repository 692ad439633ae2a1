// The control API's stats reply for the dashboard's unit tests: an engine's own counters, a
// pool address, nothing else.
import type { StatsReply } from "../../../../src/control/format.ts";
import type { NatEngine } from "../../../../src/nat/engine.ts";
import { P } from "../../nat/engine-helpers.ts";

export function fakeStats(engine: NatEngine): StatsReply {
  return {
    uptimeSec: 5,
    mode: "pool",
    publicAddresses: [P],
    engine: engine.stats(),
    datapath: {},
    device: {},
  };
}
