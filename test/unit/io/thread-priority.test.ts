// The addon's SCHED_FIFO switch for the packet loop's thread (native/tun.cc), run in a worker
// thread so that the test runner's own thread keeps its scheduling. Skipped where the addon is not
// built or the process may not use real-time scheduling (not root: the call returns EPERM).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "node:worker_threads";
import { ADDON_PATH, tryLoadAddon } from "../../../src/io/addon.ts";

const addon = tryLoadAddon();
const skip = addon === undefined ? "the addon is not built" : process.getuid?.() !== 0 ? "needs root" : false;

/**
 * In a fresh thread: [errno of the switch, its priority after, errno of the switch back, after],
 * and what `chrt` says of a process started while the thread was under SCHED_FIFO.
 */
function inThread(priority: number): Promise<[number[], string]> {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    const { execFileSync } = require("node:child_process");
    const a = require(workerData.path);
    const r = [a.setThreadRealtime(workerData.priority), a.threadRealtimePriority()];
    const child = execFileSync("sh", ["-c", "chrt -p $$"], { encoding: "utf8" });
    r.push(a.setThreadRealtime(0), a.threadRealtimePriority());
    parentPort.postMessage([r, child]);`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { path: ADDON_PATH, priority } });
    w.once("message", resolve);
    w.once("error", reject);
  });
}

describe("native: the packet loop's thread under SCHED_FIFO", { skip }, () => {
  it("switches only the calling thread, and back", async () => {
    const [r, child] = await inThread(1);
    assert.deepEqual(r, [0, 1, 0, 0]);
    assert.equal(addon?.threadRealtimePriority(), 0, "the test runner's thread is untouched");
    assert.match(child, /SCHED_OTHER/, "what the thread starts runs under the ordinary scheduler");
  });

  it("refuses a priority outside 0-99", () => {
    assert.throws(() => addon?.setThreadRealtime(100), RangeError);
    assert.throws(() => addon?.setThreadRealtime(-1), RangeError);
  });
});
