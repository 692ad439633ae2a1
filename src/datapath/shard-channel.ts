// The control channel between the main thread (the control plane) and the workers, each of which
// owns an engine shard: requests by name over a MessagePort, answered in any order, matched by id.
// An engine method that the control plane calls synchronously today (a pin, a listing, stats)
// becomes a request to the owning worker: the one a host hashes to (steering-model.ts
// hostWorker) for per-host work, every worker for configuration and listings (broadcast, the
// answers in worker order for merging). The packet path never touches it: no lock is shared.

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

/**
 * The worker's end: runs `handlers[op](args)` for each request and answers with its value (a
 * promise is awaited), or with the error (a MasqError keeps its code across the channel).
 */
export function serveShard(port: ChannelPort, handlers: ShardHandlers): () => void {
  const onMessage = (msg: unknown) => {
    const { id, op, args } = msg as Request;
    const handler = Object.hasOwn(handlers, op) ? handlers[op] : undefined;
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`shard: no operation ${op}`);
        return (handler as (a: unknown) => unknown)(args);
      })
      .then(
        (value) => port.postMessage({ id, ok: true, value } satisfies Reply),
        (err: unknown) =>
          port.postMessage({
            id,
            ok: false,
            message: err instanceof Error ? err.message : String(err),
            ...(err instanceof MasqError ? { code: err.code } : {}),
          } satisfies Reply),
      );
  };
  port.on("message", onMessage);
  return () => port.off("message", onMessage);
}

/** The main thread's end: one port per worker, in worker (queue) order. */
export class ShardClient {
  private readonly ports: readonly ChannelPort[];
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly listeners: ((value: unknown) => void)[];
  private nextId = 1;

  constructor(ports: readonly ChannelPort[]) {
    this.ports = ports;
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
    else
      p.reject(reply.code ? new MasqError(reply.code as ErrorCode, reply.message) : new Error(reply.message));
  }
}
