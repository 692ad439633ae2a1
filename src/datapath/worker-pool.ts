// `masq run` with several workers: starts one worker thread per TUN queue (worker-main.ts), waits
// until every worker has its queues open and worker 0 has attached the steering, and gives the
// control plane the shards as one engine (sharded-engine.ts) plus the datapath and device
// counters of all workers. When a step fails (the kernel has no multi-queue TUN, no
// TUNSETSTEERINGEBPF, a verifier that says no), every worker is stopped and start() rejects
// with what failed, so the daemon can fall back to one queue and say why.
import { extname } from "node:path";
import { MessageChannel, type MessagePort, type Worker } from "node:worker_threads";
import type { EngineConfig } from "../nat/config.ts";
import { type DatapathStats, emptyDatapathStats } from "./datapath.ts";
import { ShardClient, shardEnds } from "./shard-channel.ts";
import { SHARD_OPS } from "./shard-ops.ts";
import { ShardedEngine } from "./sharded-engine.ts";
import { spawnModuleWorker } from "./spawn-worker.ts";
import type { WorkerSetup } from "./worker-main.ts";

/** How long a worker may take to open its queues and answer (it loads the addon, builds a table). */
const READY_MS = 60_000;

export interface WorkerPoolOptions
  extends Pick<
    WorkerSetup,
    "count" | "engine" | "alg" | "mtu" | "tuns" | "vnetHdr" | "priority" | "io" | "ip6"
  > {
  /** The CPU each worker's thread is pinned to (undefined: not pinned). */
  cpus?: readonly number[];
  busyPollUs: number;
}

/** One worker's counters: its datapath's and its two queues'. */
export interface WorkerCounters {
  datapath: DatapathStats;
  devices: { inside: Record<string, number>; outside: Record<string, number> };
}

/** How often lapsed pins' ports beyond their slice are looked for. */
const PIN_SWEEP_MS = 5000;

export class WorkerPool {
  readonly engine: ShardedEngine;
  private readonly client: ShardClient;
  private readonly workers: Worker[];
  private stopped = false;
  /** Workers whose thread has ended (a crash, while running): they answer nothing any more. */
  private readonly ended = new Set<number>();

  /** Gives back the ports of pins that lapsed in their worker (cross-slice-pins.ts). */
  private readonly pinSweep: NodeJS.Timeout;

  private constructor(client: ShardClient, workers: Worker[], config: EngineConfig) {
    this.client = client;
    this.workers = workers;
    this.engine = new ShardedEngine(client, structuredClone(config));
    workers.forEach((w, i) => {
      w.once("exit", () => this.ended.add(i));
    });
    this.pinSweep = setInterval(() => {
      if (this.ended.size === 0) this.engine.sweepPins();
    }, PIN_SWEEP_MS);
    this.pinSweep.unref();
  }

  /** The workers whose thread still runs, in worker order. */
  running(): number[] {
    return this.workers.map((_, w) => w).filter((w) => !this.ended.has(w));
  }

  get count(): number {
    return this.workers.length;
  }

  get shards(): ShardClient {
    return this.client;
  }

  /** Starts the workers; resolves once each has its queues open and the steering is attached. */
  static async start(o: WorkerPoolOptions): Promise<WorkerPool> {
    const turn = new SharedArrayBuffer(4);
    const ends = Array.from({ length: o.count }, () => shardEnds());
    const peers = peerPorts(o.count);
    const failures: Promise<never>[] = [];
    const workers = ends.map(({ worker: port, signal }, index) => {
      const setup: WorkerSetup = {
        index,
        count: o.count,
        engine: shardConfig(o.engine, o.count),
        alg: o.alg,
        mtu: o.mtu,
        tuns: o.tuns,
        vnetHdr: o.vnetHdr,
        clockOriginMs: performance.timeOrigin,
        port,
        signal,
        turn,
        steering: { queues: o.count, ports: o.engine.ports },
        ...(o.cpus?.[index] !== undefined ? { cpu: o.cpus[index] } : {}),
        busyPollUs: o.busyPollUs,
        ...(o.priority ? { priority: o.priority } : {}),
        peers: peers[index],
        ...(o.io ? { io: o.io } : {}),
        // Each worker filters its own hosts' IPv6 (the steering's address hash): a share each.
        ...(o.ip6 ? { ip6: { ...o.ip6, capacity: Math.max(16, Math.ceil(o.ip6.capacity / o.count)) } } : {}),
      };
      // worker-main.ts beside this module, or worker-main.js when built.
      const w = spawnModuleWorker(
        new URL(`./worker-main${extname(new URL(import.meta.url).pathname)}`, import.meta.url),
        {
          workerData: setup,
          transferList: [port, ...peers[index].filter((p) => p !== null)],
        },
      );
      failures.push(
        new Promise<never>((_, reject) => {
          w.once("error", (err) => reject(new Error(`worker ${index}: ${err.message}`)));
          w.once("exit", (code) => reject(new Error(`worker ${index} exited (code ${code}) while starting`)));
        }),
      );
      return w;
    });
    const client = new ShardClient(
      ends.map((e) => e.main),
      ends.map((e) => new Int32Array(e.signal)),
    );
    // Worker 0 answers only after the steering is attached, which waits for every queue.
    const ready = Promise.all(workers.map((_, w) => client.call<number>(w, "index")));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the workers did not start within ${READY_MS} ms`)),
        READY_MS,
      );
    });
    try {
      await Promise.race([ready, late, ...failures]);
    } catch (err) {
      client.close();
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    } finally {
      clearTimeout(timer);
    }
    // From here a worker's end is a fault of the running gateway, handled by the caller's watch.
    for (const f of failures) f.catch(() => undefined);
    return new WorkerPool(client, workers, o.engine);
  }

  /** Calls `onExit` when a worker ends while the pool is running (a crash: the host must be undone). */
  watch(onExit: (why: string) => void): void {
    this.workers.forEach((w, i) => {
      w.on("error", (err) => {
        if (!this.stopped) onExit(`worker ${i}: ${err.message}`);
      });
      w.on("exit", (code) => {
        if (!this.stopped) onExit(`worker ${i} exited (code ${code})`);
      });
    });
  }

  /** Each worker's thread scheduling ("SCHED_FIFO 1", "normal priority …"), in worker order. */
  priorities(): string[] {
    return this.everySync<string>(SHARD_OPS.priority);
  }

  /** How each worker's queues reach the kernel ("io_uring", "syscalls (…)"), in worker order. */
  io(): string[] {
    return this.everySync<string>(SHARD_OPS.io);
  }

  /** Each worker's datapath and queue counters, in worker order. */
  counters(): WorkerCounters[] {
    return this.workers.map((_, w) => ({
      datapath: this.client.callSync<DatapathStats>(w, SHARD_OPS.datapathStats),
      devices: this.client.callSync<WorkerCounters["devices"]>(w, SHARD_OPS.deviceStats),
    }));
  }

  /** Runs `op` on every worker, waiting for each answer (a configuration change, an address change). */
  everySync<T>(op: string, args?: unknown): T[] {
    return this.workers.map((_, w) => this.client.callSync<T>(w, op, args));
  }

  /** Stops every worker's loop, closes its queues and ends the threads. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.pinSweep);
    for (let w = 0; w < this.workers.length; w++)
      try {
        this.client.callSync(w, "stop");
      } catch {
        // A worker that does not answer is terminated below all the same.
      }
    this.client.close();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * One shard's configuration: the gateway's capacities and its global rate shared out between
 * the workers (so the tables together take what one engine would), the per-host limits as they
 * are (a host lives on one worker).
 */
export function shardConfig(c: EngineConfig, count: number): EngineConfig {
  const share = (n: number) => shardShare(n, count);
  return {
    ...shardPolicy(c, count),
    maxFlows: share(c.maxFlows),
    maxMappings: share(c.maxMappings),
    maxHosts: share(c.maxHosts),
    maxHeldFragmentBytes: share(c.maxHeldFragmentBytes),
  };
}

/**
 * One shard's part of the live policy (at start and at a reload): the gateway-wide caps among
 * it (half-open flows, the global new-flow rate; 0 stays "no limit") shared out, the rest as it is.
 */
export function shardPolicy<P extends Pick<EngineConfig, "maxHalfOpen" | "newFlowsPerSec">>(
  p: P,
  count: number,
): P {
  return {
    ...p,
    maxHalfOpen: shardShare(p.maxHalfOpen, count),
    newFlowsPerSec: p.newFlowsPerSec === 0 ? 0 : shardShare(p.newFlowsPerSec, count),
  };
}

/** A gateway-wide figure's part on each of `count` shards (at least 1). */
function shardShare(n: number, count: number): number {
  return Math.max(1, Math.ceil(n / count));
}

/** Adds up the workers' datapath counters; the largest batch is the largest of any worker. */
export function mergeDatapathStats(parts: readonly DatapathStats[]): DatapathStats {
  const out = emptyDatapathStats();
  for (const p of parts) {
    out.coalesced += p.coalesced;
    out.batches += p.batches;
    out.packets += p.packets;
    out.written += p.written;
    out.writeFailures += p.writeFailures;
    out.largestBatch = Math.max(out.largestBatch, p.largestBatch);
  }
  return out;
}

/** A channel between every two workers: peers[i][j] is worker i's end towards worker j (null: i = j). */
function peerPorts(count: number): (MessagePort | null)[][] {
  const peers = Array.from({ length: count }, () => Array<MessagePort | null>(count).fill(null));
  for (let i = 0; i < count; i++)
    for (let j = i + 1; j < count; j++) {
      const { port1, port2 } = new MessageChannel();
      peers[i][j] = port1;
      peers[j][i] = port2;
    }
  return peers;
}
