// Server-Sent Events to the dashboard's pages. One frame is made per tick and written to every
// client (the snapshot is computed once, whoever watches); a client whose socket has not taken
// the last frame yet skips the next ones instead of having them queued without bound, and the
// number of clients is capped, so a page left open in many tabs cannot make masq work more.
import type { ServerResponse } from "node:http";

/** Pages served at once; one more is refused (503) until one closes. */
export const MAX_CLIENTS = 16;

/**
 * One event in the text/event-stream format (HTML Living Standard §9.2): `event:` and one `data:`
 * line per line of the data (a newline inside data would end the field), then a blank line.
 */
export function sseFrame(event: string, data: string): string {
  if (/[\r\n]/.test(event)) throw new Error("an SSE event name has no line breaks");
  return `event: ${event}\n${data
    .split(/\r\n|\r|\n/)
    .map((line) => `data: ${line}\n`)
    .join("")}\n`;
}

export interface SseStats {
  clients: number;
  refused: number;
  framesSent: number;
  /** Frames not written to a client because it had not taken the one before. */
  framesSkipped: number;
}

export class SseHub {
  readonly stats: SseStats = { clients: 0, refused: 0, framesSent: 0, framesSkipped: 0 };
  private readonly clients = new Set<ServerResponse>();

  constructor(
    private readonly maxClients = MAX_CLIENTS,
    private readonly headers: Record<string, string> = {},
  ) {}

  get size(): number {
    return this.clients.size;
  }

  /** Takes `res` as a client and sends it `first`; false (nothing sent) when the hub is full. */
  add(res: ServerResponse, first: string): boolean {
    if (this.clients.size >= this.maxClients) {
      this.stats.refused++;
      return false;
    }
    res.writeHead(200, {
      ...this.headers,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
    });
    // A lost connection is retried by the browser after this many ms.
    res.write("retry: 2000\n\n");
    res.write(first);
    this.clients.add(res);
    this.stats.clients = this.clients.size;
    res.once("close", () => {
      this.clients.delete(res);
      this.stats.clients = this.clients.size;
    });
    return true;
  }

  broadcast(frame: string): void {
    for (const res of this.clients) {
      if (res.writableNeedDrain) {
        this.stats.framesSkipped++;
        continue;
      }
      res.write(frame);
      this.stats.framesSent++;
    }
  }

  closeAll(): void {
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.stats.clients = 0;
  }
}
