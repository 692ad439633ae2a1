// Response bodies made a chunk at a time on the packet loop's thread. The scheduler runs one
// chunk per turn of the event loop, taking the streams in turn, so however many listings are
// open the packet loop waits for at most one chunk between its batches; a stream whose socket is
// full waits for it to drain (at most one chunk is buffered per response), and the number of
// streams open at once is bounded.
import type { ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";

/** A response body produced piece by piece; each `next()` does a bounded amount of work. */
export interface ChunkedBody {
  readonly contentType: string;
  /** The next piece of the body (empty when this step produced none), or null when it is complete. */
  next(): Uint8Array | null;
  /** A piece `next()` gave has been sent: its memory may be used again. */
  recycle?(chunk: Uint8Array): void;
}

/** Streams open at once; more are refused (503) rather than queued without bound. */
export const MAX_STREAMS = 32;
/** A client that reads nothing for this long loses its stream (and the memory it holds). */
const STALL_MS = 60_000;

interface Stream {
  res: ServerResponse;
  body: ChunkedBody;
  closed: boolean;
}

export interface StreamStats {
  /** Streamed answers begun, and refused because too many were open. */
  streams: number;
  refused: number;
  chunks: number;
  /** The longest one chunk held the thread (making it and handing it to the socket), in ms. */
  longestChunkMs: number;
  /**
   * The most CPU time the process used during one chunk, in ms. Far below longestChunkMs, the
   * thread was waiting for a CPU (a busy machine), not working.
   */
  longestChunkCpuMs: number;
}

export class ChunkScheduler {
  readonly stats: StreamStats = {
    streams: 0,
    refused: 0,
    chunks: 0,
    longestChunkMs: 0,
    longestChunkCpuMs: 0,
  };
  private readonly ready: Stream[] = [];
  private open = 0;
  private scheduled = false;

  constructor(private readonly maxStreams = MAX_STREAMS) {}

  /** Streams being sent now. */
  get active(): number {
    return this.open;
  }

  /** Starts sending `body` as a 200 response; false (nothing sent) when too many are open. */
  stream(res: ServerResponse, body: ChunkedBody): boolean {
    if (this.open >= this.maxStreams) {
      this.stats.refused++;
      return false;
    }
    this.stats.streams++;
    const s: Stream = { res, body, closed: false };
    this.open++;
    res.once("close", () => this.finish(s));
    res.writeHead(200, { "content-type": body.contentType });
    // The client learns at once that its listing has begun, whatever the first chunks hold.
    res.flushHeaders();
    this.ready.push(s);
    this.kick();
    return true;
  }

  private finish(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    this.open--;
    const i = this.ready.indexOf(s);
    if (i >= 0) this.ready.splice(i, 1);
  }

  private kick(): void {
    if (this.scheduled || this.ready.length === 0) return;
    this.scheduled = true;
    setImmediate(this.turn);
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    const s = this.ready.shift();
    if (s && !s.closed) {
      const started = performance.now();
      const cpu = process.cpuUsage();
      this.advance(s);
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      const cpuMs = (used.user + used.system) / 1000;
      const st = this.stats;
      st.chunks++;
      if (ms > st.longestChunkMs) st.longestChunkMs = Math.round(ms * 100) / 100;
      if (cpuMs > st.longestChunkCpuMs) st.longestChunkCpuMs = Math.round(cpuMs * 100) / 100;
    }
    this.kick();
  };

  /** Writes a chunk; false when the socket is full (wait for it to drain). */
  private write(s: Stream, chunk: Uint8Array): boolean {
    const body = s.body;
    return body.recycle ? s.res.write(chunk, () => body.recycle?.(chunk)) : s.res.write(chunk);
  }

  private advance(s: Stream): void {
    let chunk: Uint8Array | null;
    try {
      chunk = s.body.next();
    } catch (err) {
      // A bug in a listing must not take the daemon down: the client sees a cut-off body.
      s.res.destroy(err instanceof Error ? err : new Error(String(err)));
      this.finish(s);
      return;
    }
    if (chunk === null) {
      s.res.end();
      this.finish(s);
    } else if (chunk.length === 0 || this.write(s, chunk)) this.ready.push(s);
    else {
      const stalled = setTimeout(() => s.res.destroy(), STALL_MS);
      stalled.unref();
      s.res.once("close", () => clearTimeout(stalled));
      s.res.once("drain", () => {
        clearTimeout(stalled);
        if (s.closed) return;
        this.ready.push(s);
        this.kick();
      });
    }
  }
}
