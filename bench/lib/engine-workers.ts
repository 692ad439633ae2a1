// The engine benchmark's all-workers figure: one worker thread per worker, each with its own
// engine (as each `masq run` worker has its shard) and 1 M flows, measured side by side: all
// build their tables first, then start together behind a barrier.
import { spawnModuleWorker } from "../../src/datapath/spawn-worker.ts";

/** Each worker's UDP Mpps with `flows` flows, all running at once. */
export async function allWorkersSteady(workers: number, flows: number, quick: boolean): Promise<number[]> {
  const barrier = new SharedArrayBuffer(4);
  const runs = Array.from({ length: workers }, (_, index) => {
    const w = spawnModuleWorker(new URL("./engine-worker.ts", import.meta.url), {
      workerData: { index, workers, flows, quick, barrier },
    });
    return new Promise<number>((resolve, reject) => {
      w.once("message", (mpps: number) => resolve(mpps));
      w.once("error", reject);
      w.once("exit", (code) => reject(new Error(`engine worker ${index} exited (code ${code})`)));
    });
  });
  return Promise.all(runs);
}
