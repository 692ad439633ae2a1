// One worker of the engine benchmark's all-workers figure (engine-workers.ts): pinned to its CPU
// when the addon is built, builds its engine, waits for the others, runs the steady state.
import { availableParallelism } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { loadAddon } from "../../src/io/addon.ts";
import { hugePageAllocator } from "../../src/io/huge-pages.ts";
import { IPPROTO_UDP } from "../../src/packet/ipv4.ts";
import { steady } from "./engine-steady.ts";

const { index, workers, flows, quick, barrier } = workerData as {
  index: number;
  workers: number;
  flows: number;
  quick: boolean;
  barrier: SharedArrayBuffer;
};
try {
  loadAddon().pinThread(index % availableParallelism());
} catch {
  // No addon: the kernel places the thread.
}
const ready = new Int32Array(barrier);
const mpps = steady(IPPROTO_UDP, flows, {
  quick,
  allocate: hugePageAllocator(),
  beforeRun: () => {
    Atomics.add(ready, 0, 1);
    Atomics.notify(ready, 0);
    for (let n = Atomics.load(ready, 0); n < workers; n = Atomics.load(ready, 0))
      Atomics.wait(ready, 0, n, 1000);
  },
});
parentPort?.postMessage(mpps);
