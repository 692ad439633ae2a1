// A worker thread of `masq run` with several workers: its own queue of each TUN (the queues of
// all workers opened in worker order, so the kernel's queue n is worker n's), an engine shard
// allocating from its port slice with an ALG registry of its own, the datapath loop over its
// queues, and the control operations (shard-ops.ts) served over its MessagePort. Worker 0
// attaches the steering programs once every worker has its queues open. Started by the main
// thread with WorkerSetup as workerData.
import { type MessagePort, workerData } from "node:worker_threads";
import type { AnyAlgConfig } from "../alg/config.ts";
import { AlgRegistry } from "../alg/registry.ts";
import {
  checkDatapathIo,
  type DatapathIo,
  type DatapathPriority,
  datapathIoSummary,
} from "../control/datapath-config.ts";
import { loadAddon } from "../io/addon.ts";
import { TunDevice } from "../io/tun.ts";
import { Ip6Filter, type Ip6FilterOptions } from "../ipv6fw/filter.ts";
import type { EngineConfig } from "../nat/config.ts";
import { NatEngine, SIDE_INSIDE, SIDE_OUTSIDE } from "../nat/engine.ts";
import { applyDatapathPriority } from "./cpu-placement.ts";
import { Datapath } from "./datapath.ts";
import { serveShard } from "./shard-channel.ts";
import { ip6ShardOps } from "./shard-ip6.ts";
import { liveShardOps } from "./shard-live.ts";
import { natLogShardOps } from "./shard-natlog.ts";
import { engineShardOps, type PortOwner, SHARD_OPS } from "./shard-ops.ts";
import { TunSteering } from "./steering.ts";
import type { SteeringPlan } from "./steering-model.ts";

export interface WorkerSetup {
  index: number;
  count: number;
  engine: EngineConfig;
  alg: AnyAlgConfig;
  mtu: number;
  tuns: { inside: string; outside: string };
  vnetHdr: boolean;
  /** The main thread's engine clock at its zero, as an epoch time (timeOrigin + offset). */
  clockOriginMs: number;
  port: MessagePort;
  /** The answer counter callSync waits on. */
  signal: SharedArrayBuffer;
  /** Whose turn it is to open its queues (one Int32): queues open in worker order. */
  turn: SharedArrayBuffer;
  /** Worker 0 attaches these when every queue is open. */
  steering: SteeringPlan;
  /** The CPU this worker's thread is pinned to (absent: not pinned). */
  cpu?: number;
  /** How long the loop keeps reading after the last packet (0: off; the addon's setting). */
  busyPollUs?: number;
  /** The loop's scheduling (cpu-placement.ts): each worker sets its own thread's. */
  priority?: DatapathPriority;
  /** A port to every other worker, by its index (null: this one), for handed-off fragments. */
  peers?: (MessagePort | null)[];
  /** How the worker's queues reach the kernel (default "syscalls"): each worker its own rings. */
  io?: DatapathIo;
  /** The IPv6 firewall (`[ipv6] firewall`) for this worker's hosts; absent: off. */
  ip6?: Ip6FilterOptions;
}

const TURN_WAIT_MS = 30_000;

const setup = workerData as WorkerSetup;
const turn = new Int32Array(setup.turn);
for (let t = Atomics.load(turn, 0); t < setup.index; t = Atomics.load(turn, 0))
  if (Atomics.wait(turn, 0, t, TURN_WAIT_MS) === "timed-out")
    throw new Error(`worker ${setup.index}: worker ${t} did not open its queues`);
const queue = { vnetHdr: setup.vnetHdr, multiQueue: true, io: setup.io ?? "syscalls" } as const;
const inside = TunDevice.open({ name: setup.tuns.inside, ...queue });
const outside = TunDevice.open({ name: setup.tuns.outside, ...queue });
Atomics.store(turn, 0, setup.index + 1);
Atomics.notify(turn, 0);
checkDatapathIo(queue.io, [inside, outside]);

let steering: TunSteering | undefined;
if (setup.index === 0) {
  for (let t = Atomics.load(turn, 0); t < setup.count; t = Atomics.load(turn, 0))
    if (Atomics.wait(turn, 0, t, TURN_WAIT_MS) === "timed-out")
      throw new Error(`worker 0: worker ${t} did not open its queues`);
  steering = TunSteering.attach(inside, outside, setup.steering);
}

if (setup.cpu !== undefined) loadAddon().pinThread(setup.cpu);
if (setup.busyPollUs !== undefined) loadAddon().setBusyPoll(setup.busyPollUs);
const priority = applyDatapathPriority(setup.priority ?? "normal", loadAddon());
const engine = new NatEngine({ ...setup.engine, portSlice: { index: setup.index, count: setup.count } });
const algs = new AlgRegistry(engine, setup.alg, setup.mtu);
engine.attachAlg(algs);
const clock = () => performance.timeOrigin + performance.now() - setup.clockOriginMs;
const ip6 = setup.ip6 ? new Ip6Filter(setup.ip6) : undefined;
const datapath = new Datapath(
  engine,
  [
    { io: inside, side: SIDE_INSIDE },
    { io: outside, side: SIDE_OUTSIDE },
  ],
  clock,
  ip6,
);
datapath.start();
// Fragments of another worker's datagram go to it, and come from the others (fragment-handoff.ts).
const peers = setup.peers ?? [];
datapath.setHandoff((w, pkt) => peers[w]?.postMessage(pkt, [pkt.buffer as ArrayBuffer]));
for (const peer of peers) peer?.on("message", (msg: Uint8Array) => datapath.receiveHandoff(msg));

serveShard(
  setup.port,
  {
    ...engineShardOps(engine),
    ...liveShardOps(engine, algs),
    ...natLogShardOps(engine, () => datapath.stop(), clock),
    index: () => setup.index,
    [SHARD_OPS.priority]: () => priority,
    [SHARD_OPS.io]: () => datapathIoSummary([inside, outside]),
    [SHARD_OPS.datapathStats]: () => datapath.stats,
    [SHARD_OPS.deviceStats]: () => ({ inside: inside.stats(), outside: outside.stats() }),
    // The resets for the inside hosts' connections on the old address leave from this worker,
    // whose hosts they are; the main thread gets the counts.
    [SHARD_OPS.changePublicAddress]: (to: number) => {
      const change = engine.changePublicAddress(to);
      return {
        old: change.old,
        flows: change.flows,
        moved: change.moved,
        resets: datapath.sendInside(change.resets),
      };
    },
    [SHARD_OPS.setAddressless]: (none: boolean) => engine.setAddressless(none),
    ...(ip6 ? ip6ShardOps(ip6, clock) : {}),
    // Every worker keeps the owner for the fragments it hands on; worker 0 holds the steering.
    [SHARD_OPS.setPortOwner]: (o: PortOwner) => {
      engine.setPortOwner(o.proto, o.port, o.worker);
      steering?.setOverride(o.proto, o.port, o.worker);
    },
    stop: () => {
      datapath.stop();
      steering?.close();
      inside.close();
      outside.close();
      for (const peer of peers) peer?.close();
      setImmediate(() => setup.port.close());
      return true;
    },
  },
  new Int32Array(setup.signal),
);
