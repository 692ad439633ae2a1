import assert from "node:assert/strict";
import { test } from "node:test";
import { sumCounters, waitForDevicesGone } from "../../../src/datapath/tuns.ts";

test("waitForDevicesGone returns at once when the devices are not there", async () => {
  const t0 = Date.now();
  assert.deepEqual(await waitForDevicesGone(["masq-no-such-dev"], 5000), []);
  assert.ok(Date.now() - t0 < 1000);
});

test("waitForDevicesGone names a device that stays past the timeout", async () => {
  // Every network namespace has its loopback device.
  assert.deepEqual(await waitForDevicesGone(["lo", "masq-no-such-dev"], 30), ["lo"]);
});

test("sumCounters adds the devices' counters counter by counter", () => {
  assert.deepEqual(sumCounters({ a: { rx: 1, tx: 2 }, b: { rx: 3, drops: 4 } }), { rx: 4, tx: 2, drops: 4 });
});
