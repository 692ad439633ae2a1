// The control API: HTTP over a Unix socket (only root reaches it; nothing listens on the
// network). GET reads health, the connection table, counters and Prometheus metrics; port
// forwards are written too: POST /v1/forwards adds one, DELETE /v1/forwards/<key> removes one;
// POST /v1/reload re-reads the config file.
// The connection table is streamed in chunks (chunked.ts, conns-listing.ts): it can be 200 k
// flows.
import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect } from "node:net";
import { dirname } from "node:path";
import { type ErrorCode, httpStatusOf } from "../errors/codes.ts";
import { MasqError } from "../errors/masq-error.ts";
import { type ChunkedBody, ChunkScheduler, type StreamStats } from "./chunked.ts";
import { type ConnsQuery, parseConnsQuery } from "./conns-listing.ts";
import { ControlError } from "./errors.ts";

export { ControlError } from "./errors.ts";

/** What the daemon exposes; each call is made per request (not hot path). */
export interface ControlSource {
  health(): object;
  /** The connection table for `query`, as a body the server sends a chunk at a time. */
  conns(query: ConnsQuery): ChunkedBody;
  stats(): object;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Port forwards: list, add (body: {outside, inside, remote?, note?}), delete by id or outside text. */
  forwards?: {
    list(): object;
    add(body: unknown): Promise<object>;
    remove(key: string): Promise<object>;
  };
  /** Re-reads the config file and applies what changed (with `check`: only says what would). */
  reload?(check: boolean): Promise<object>;
  /** GET /v1/whois?address=A&port=P[&at=ms since the epoch]: `masq whois`. */
  whois?(query: URLSearchParams): object;
  /** POST /v1/stop (body: {keepState?}): `masq stop`. */
  stop?(body: unknown): object;
}

/** Request bodies are small JSON objects. */
const MAX_BODY = 64 * 1024;

export class ControlServer {
  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
    private readonly streams: ChunkScheduler,
  ) {}

  /** How the streamed answers (connection listings) went: counts and the longest chunk. */
  get streamStats(): StreamStats {
    return { ...this.streams.stats };
  }

  static async start(socketPath: string, source: ControlSource): Promise<ControlServer> {
    mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
    if (existsSync(socketPath)) {
      if (await socketAnswers(socketPath))
        throw new MasqError(
          "MASQ_ERR_SOCKET_IN_USE",
          `control socket ${socketPath} is in use: is another masq running? (use --socket)`,
        );
      unlinkSync(socketPath); // left by a run that crashed
    }
    const streams = new ChunkScheduler();
    const server = createServer((req, res) => {
      route(source, streams, req, res).catch((err: unknown) =>
        err instanceof MasqError
          ? refuse(res, err.code, err.message)
          : refuse(res, "MASQ_ERR_INTERNAL", String(err)),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.off("error", reject);
        resolve();
      });
    });
    chmodSync(socketPath, 0o600);
    return new ControlServer(server, socketPath, streams);
  }

  async close(): Promise<void> {
    // Connections first: close() waits for every open one, and a client's keep-alive connection
    // would hold masq's exit until whoever stops it gives up and kills it, socket file and all.
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

async function route(
  source: ControlSource,
  streams: ChunkScheduler,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const url = requestUrl(req);
  if (url.pathname === "/v1/forwards" || url.pathname.startsWith("/v1/forwards/"))
    return routeForwards(source, url, req, res);
  if (url.pathname === "/v1/reload") {
    if (req.method !== "POST" || !source.reload)
      return refuse(res, "MASQ_ERR_METHOD_NOT_ALLOWED", `method ${req.method} not allowed on /v1/reload`);
    const body = (await readJson(req)) as { check?: unknown } | null;
    return send(res, 200, await source.reload(body?.check === true));
  }
  if (url.pathname === "/v1/stop" && req.method === "POST" && source.stop)
    return send(res, 202, source.stop(await readJson(req)));
  if (req.method !== "GET")
    return refuse(res, "MASQ_ERR_METHOD_NOT_ALLOWED", `method ${req.method} not allowed`);
  switch (url.pathname) {
    case "/v1/health":
      return send(res, 200, source.health());
    case "/v1/conns": {
      const body = source.conns(parseConnsQuery(url.searchParams));
      if (!streams.stream(res, body))
        return refuse(
          res,
          "MASQ_ERR_LISTINGS_BUSY",
          `${streams.active} listings are in progress; try again shortly`,
        );
      return;
    }
    case "/v1/whois":
      if (!source.whois) return refuse(res, "MASQ_ERR_METHOD_NOT_ALLOWED", "whois is not available");
      return send(res, 200, source.whois(url.searchParams));
    case "/v1/stats":
      return send(res, 200, source.stats());
    case "/metrics": {
      const m = await source.metrics();
      res.writeHead(200, { "content-type": m.contentType });
      res.end(m.body);
      return;
    }
    default:
      return refuse(res, "MASQ_ERR_NO_SUCH_ENDPOINT", `no such endpoint ${url.pathname}`);
  }
}

async function routeForwards(
  source: ControlSource,
  url: URL,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const fw = source.forwards;
  if (!fw) return refuse(res, "MASQ_ERR_NO_SUCH_ENDPOINT", "this masq has no port forwarding");
  const key = decodePath(url.pathname.slice("/v1/forwards/".length));
  if (url.pathname === "/v1/forwards") {
    if (req.method === "GET") return send(res, 200, fw.list());
    if (req.method === "POST") return send(res, 201, await fw.add(await readJson(req)));
  } else if (req.method === "DELETE" && key !== "") {
    return send(res, 200, await fw.remove(key));
  }
  return refuse(res, "MASQ_ERR_METHOD_NOT_ALLOWED", `method ${req.method} not allowed on ${url.pathname}`);
}

/** The request's URL; a target that is no URL is the client's mistake (400), not the server's. */
function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? "/", "http://masq");
  } catch {
    throw new ControlError("MASQ_ERR_BAD_REQUEST", `malformed request target ${JSON.stringify(req.url)}`);
  }
}

/** A %-encoded path segment; a malformed escape ("%zz", a cut-off UTF-8 sequence) is a 400. */
function decodePath(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ControlError("MASQ_ERR_BAD_REQUEST", `malformed %-escape in ${JSON.stringify(segment)}`);
  }
}

/** A request's JSON body of at most `maxBytes` (the control API's and the dashboard's). */
export async function readJson(req: IncomingMessage, maxBytes = MAX_BODY): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > maxBytes) throw new ControlError("MASQ_ERR_BODY_TOO_LARGE", "request body too large");
    chunks.push(c);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new ControlError("MASQ_ERR_BAD_REQUEST", "request body is not JSON");
  }
}

/** A refusal: `{ error, code }` with the code's HTTP status (errors/codes.ts). */
function refuse(res: ServerResponse, code: ErrorCode, message: string): void {
  send(res, httpStatusOf(code), { error: message, code });
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
