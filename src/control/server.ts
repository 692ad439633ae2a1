// The control API: HTTP over a Unix socket (only root reaches it; nothing listens on the
// network). Read-only for now: health, connection table, counters, Prometheus metrics.
import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect } from "node:net";
import { dirname } from "node:path";

/** What the daemon exposes; each call is made per request (not hot path). */
export interface ControlSource {
  health(): object;
  conns(limit: number): object;
  stats(): object;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export const MAX_CONNS_LIMIT = 1_000_000;

export class ControlServer {
  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
  ) {}

  static async start(socketPath: string, source: ControlSource): Promise<ControlServer> {
    mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
    if (existsSync(socketPath)) {
      if (await socketAnswers(socketPath))
        throw new Error(`control socket ${socketPath} is in use: is another masq running? (use --socket)`);
      unlinkSync(socketPath); // left by a run that crashed
    }
    const server = createServer((req, res) => {
      route(source, req, res).catch((err: unknown) => send(res, 500, { error: String(err) }));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.off("error", reject);
        resolve();
      });
    });
    chmodSync(socketPath, 0o600);
    return new ControlServer(server, socketPath);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections?.();
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

async function route(source: ControlSource, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://masq");
  if (req.method !== "GET") return send(res, 405, { error: `method ${req.method} not allowed` });
  switch (url.pathname) {
    case "/v1/health":
      return send(res, 200, source.health());
    case "/v1/conns": {
      const text = url.searchParams.get("limit");
      const limit = text === null ? MAX_CONNS_LIMIT : Number(text);
      if (!Number.isInteger(limit) || limit < 0 || limit > MAX_CONNS_LIMIT)
        return send(res, 400, { error: `limit must be an integer 0-${MAX_CONNS_LIMIT}` });
      return send(res, 200, source.conns(limit));
    }
    case "/v1/stats":
      return send(res, 200, source.stats());
    case "/metrics": {
      const m = await source.metrics();
      res.writeHead(200, { "content-type": m.contentType });
      res.end(m.body);
      return;
    }
    default:
      return send(res, 404, { error: `no such endpoint ${url.pathname}` });
  }
}

function send(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(`${JSON.stringify(body)}\n`);
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
