// The control channel between the main thread (the control plane) and the workers, each of which
// owns an engine shard: requests by name over a MessagePort, answered in any order, matched by id.
// An engine method that the control plane calls synchronously today (a pin, a listing, stats)
// becomes a request to the owning worker: the one a host hashes to (steering-model.ts
// hostWorker) for per-host work, every worker for configuration and listings (broadcast, the
// answers in worker order for merging). The packet path never touches it: no lock is shared.
//
// Most of the control plane calls the engine synchronously today (a NAT-PMP answer needs the
// port pinMapping chose before it returns). callSync keeps that shape across threads: it posts
// the request and blocks the main thread (Atomics.wait on a counter the worker bumps with each
// answer) until the answer can be taken off the port with receiveMessageOnPort. Only the control
// plane waits, for one request between two of the worker's batches; a worker never waits for the
// main thread, so the two cannot deadlock.
import { MessageChannel, type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import type { ErrorCode } from "../errors/codes.ts";
import { MasqError } from "../errors/masq-error.ts";

/** What both ends need of a MessagePort (or a Worker, or the worker's parentPort). */
export interface ChannelPort {
  postMessage(value: unknown): void;
  on(event: "message", listener: (value: unknown) => void): unknown;
  off(event: "message", listener: (value: unknown) => void): unknown;
}

interface Request {
  id: number;
  op: string;
  args: unknown;
}

type Reply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string; code?: string };

export type ShardHandlers = Record<string, (args: never) => unknown>;

/** Bytes of the answer counter a worker bumps for callSync (one Int32 on shared memory). */
export const ANSWER_SIGNAL_BYTES = 4;

/** A new channel to a worker: the main thread's port, the worker's (to transfer) and the answer counter. */
export function shardEnds(): { main: MessagePort; worker: MessagePort; signal: SharedArrayBuffer } {
  const ch = new MessageChannel();
  return { main: ch.port1, worker: ch.port2, signal: new SharedArrayBuffer(ANSWER_SIGNAL_BYTES) };
}

/**
 * The worker's end: runs `handlers[op](args)` for each request and answers with its value (a
 * promise is awaited), or with the error (a MasqError keeps its code across the channel).
 * `signal`: the answer counter on shared memory that callSync waits on.
 */
export function serveShard(port: ChannelPort, handlers: ShardHandlers, signal?: Int32Array): () => void {
  const answer = (reply: Reply) => {
    port.postMessage(reply);
    if (signal) {
      Atomics.add(signal, 0, 1);
      Atomics.notify(signal, 0);
    }
  };
  const onMessage = (msg: unknown) => {
    const { id, op, args } = msg as Request;
    const handler = Object.hasOwn(handlers, op) ? handlers[op] : undefined;
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`shard: no operation ${op}`);
        return (handler as (a: unknown) => unknown)(args);
      })
      .then(
        (value) => answer({ id, ok: true, value }),
        (err: unknown) =>
          answer({
            id,
            ok: false,
            message: err instanceof Error ? err.message : String(err),
            ...(err instanceof MasqError ? { code: err.code } : {}),
          }),
      );
  };
  port.on("message", onMessage);
  return () => port.off("message", onMessage);
}

/** The main thread's end: one port per worker, in worker (queue) order. */
export class ShardClient {
  private readonly ports: readonly ChannelPort[];
  /** Per worker, the answer counter its serveShard bumps (for callSync). */
  private readonly signals: readonly Int32Array[];
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners: ((value: unknown) => void)[];
  private nextId = 1;

  constructor(ports: readonly ChannelPort[], signals: readonly Int32Array[] = []) {
    this.ports = ports;
    this.signals = signals;
    this.listeners = ports.map((port) => {
      const onMessage = (msg: unknown) => this.settle(msg as Reply);
      port.on("message", onMessage);
      return onMessage;
    });
  }

  get workers(): number {
    return this.ports.length;
  }

  /** Runs `op` on worker `worker`; rejects with the worker's error (a MasqError with its code). */
  call<T>(worker: number, op: string, args?: unknown): Promise<T> {
    const port = this.ports[worker];
    if (!port) return Promise.reject(new RangeError(`shard: no worker ${worker}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      port.postMessage({ id, op, args } satisfies Request);
    });
  }

  /**
   * Runs `op` on worker `worker` and waits for its answer, blocking this thread (at most
   * `timeoutMs`): for the control plane's synchronous engine calls. The port must be a
   * MessagePort and the worker's serveShard must bump the signal this client was given.
   */
  callSync<T>(worker: number, op: string, args?: unknown, timeoutMs = 5000): T {
    const port = this.ports[worker] as MessagePort | undefined;
    const signal = this.signals[worker];
    if (!port || !signal) throw new RangeError(`shard: no worker ${worker} to wait for`);
    const id = this.nextId++;
    let seen = Atomics.load(signal, 0);
    port.postMessage({ id, op, args } satisfies Request);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = receiveMessageOnPort(port);
      if (got !== undefined) {
        const reply = got.message as Reply;
        if (reply.id !== id) {
          this.settle(reply); // an earlier asynchronous call's answer
          continue;
        }
        if (reply.ok) return reply.value as T;
        throw replyError(reply);
      }
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(signal, 0, seen, left) === "timed-out")
        throw new Error(`shard: worker ${worker} did not answer ${op} within ${timeoutMs} ms`);
      seen = Atomics.load(signal, 0);
    }
  }

  /** Runs `op` on every worker; the answers in worker order. */
  broadcast<T>(op: string, args?: unknown): Promise<T[]> {
    return Promise.all(this.ports.map((_, w) => this.call<T>(w, op, args)));
  }

  /** Stops listening; what is still unanswered is rejected. */
  close(): void {
    this.ports.forEach((port, w) => {
      port.off("message", this.listeners[w]);
    });
    for (const p of this.pending.values()) p.reject(new Error("shard: channel closed"));
    this.pending.clear();
  }

  private settle(reply: Reply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (reply.ok) p.resolve(reply.value);
    else p.reject(replyError(reply));
  }
}

function replyError(reply: Reply & { ok: false }): Error {
  return reply.code ? new MasqError(reply.code as ErrorCode, reply.message) : new Error(reply.message);
}
