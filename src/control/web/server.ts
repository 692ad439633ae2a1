// The live dashboard (`masq run … --web 127.0.0.1:8080`, `[web]`): a page served by masq itself
// over node:http, with the connection table, per-host throughput, drops, forwards, mappings, the
// public address and ALG expectations, kept live by Server-Sent Events.
//
//   GET /                 the page (and /app.js, /app.css, uPlot's files)
//   GET /api/events       text/event-stream: "hello" (history and the latest snapshot), then
//                         one "snapshot" per tick
//   GET /api/snapshot     the latest snapshot as JSON
//   GET /api/session      {allowChanges, csrf?}: what the page may do
//   POST /api/forwards    {outside, inside, remote?, note?}   } only with allow_changes,
//   DELETE /api/forwards/<id or outside>                      } through masq forward's code
//
// Every answer carries a strict Content-Security-Policy (the page has no inline script or
// style, and asks nothing of another origin) and nosniff; API answers are never cached.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { type ErrorCode, httpStatusOf } from "../../errors/codes.ts";
import { MasqError } from "../../errors/masq-error.ts";
import { type ControlSource, readJson } from "../server.ts";
import { type Asset, loadAssets } from "./assets.ts";
import { WebAuth } from "./auth.ts";
import type { Sampler, Snapshot } from "./sampler.ts";
import { MAX_CLIENTS, SseHub, sseFrame } from "./sse.ts";

export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-resource-policy": "same-origin",
};

/** Request bodies are one small forward. */
const MAX_BODY = 16 * 1024;
/** The most often a snapshot goes out, and how much longer than it held the thread the next one waits. */
export const DEFAULT_TICK_MS = 1000;
const TICK_COST_FACTOR = 10;
const MIN_GAP_MS = 100;

export interface WebServerOptions {
  host: string;
  port: number;
  /** The token a browser must present; undefined: none needed (loopback). */
  token?: string;
  allowChanges: boolean;
  sampler: Sampler;
  /** The control API's forwards (add, remove): the same code as `masq forward`. */
  forwards?: ControlSource["forwards"];
  tickMs?: number;
  maxClients?: number;
  onError?: (err: unknown) => void;
  /** Static files (tests); default: the built dashboard. */
  assets?: Map<string, Asset>;
}

export class WebServer {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly server: Server,
    readonly address: AddressInfo,
    readonly hub: SseHub,
    private readonly o: WebServerOptions,
  ) {}

  static async start(o: WebServerOptions): Promise<WebServer> {
    const assets = o.assets ?? loadAssets();
    const auth = new WebAuth(o.token);
    const hub = new SseHub(o.maxClients ?? MAX_CLIENTS, SECURITY_HEADERS);
    const server = createServer((req, res) => {
      handle(req, res, { o, auth, hub, assets }).catch((err: unknown) =>
        err instanceof MasqError
          ? refuse(res, err.code, err.message)
          : refuse(res, "MASQ_ERR_INTERNAL", String(err)),
      );
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.port, o.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const web = new WebServer(server, server.address() as AddressInfo, hub, o);
    web.schedule(0);
    return web;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const began = performance.now();
    let busyMs = 0;
    try {
      const snap = await this.o.sampler.tick();
      const started = performance.now();
      if (this.hub.size > 0) this.hub.broadcast(sseFrame("snapshot", JSON.stringify(snap)));
      busyMs = this.o.sampler.lastBusyMs + (performance.now() - started);
    } catch (err) {
      this.o.onError?.(err);
    }
    // Ticks begin a period apart (the listing's waits between slices included), never closer
    // than MIN_GAP_MS after the last one ended.
    const period = Math.max(this.o.tickMs ?? DEFAULT_TICK_MS, busyMs * TICK_COST_FACTOR);
    this.schedule(Math.max(MIN_GAP_MS, period - (performance.now() - began)));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.hub.closeAll();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

interface Context {
  o: WebServerOptions;
  auth: WebAuth;
  hub: SseHub;
  assets: Map<string, Asset>;
}

async function handle(req: IncomingMessage, res: ServerResponse, c: Context): Promise<void> {
  let url: URL;
  try {
    url = new URL(req.url ?? "/", "http://masq");
  } catch {
    return refuse(res, "MASQ_ERR_BAD_REQUEST", "malformed request target");
  }
  const a = c.auth.check(req, url);
  if (a.ok === false) {
    res.setHeader("www-authenticate", 'Bearer realm="masq"');
    return refuse(res, "MASQ_ERR_WEB_UNAUTHORIZED", "this dashboard needs its token");
  }
  if (a.ok === "redirect") {
    res.writeHead(303, {
      ...SECURITY_HEADERS,
      "set-cookie": a.cookie,
      location: a.location,
      "cache-control": "no-store",
    });
    res.end();
    return;
  }
  const path = url.pathname;
  if (path === "/api/forwards" || path.startsWith("/api/forwards/")) return changeForwards(req, res, c, path);
  if (req.method !== "GET" && req.method !== "HEAD")
    return refuse(res, "MASQ_ERR_METHOD_NOT_ALLOWED", `method ${req.method} not allowed on ${path}`);
  switch (path) {
    case "/api/events":
      if (!c.hub.add(res, hello(c.o.sampler)))
        refuse(res, "MASQ_ERR_WEB_BUSY", `${c.hub.size} pages are open already (the most served at once)`);
      return;
    case "/api/snapshot":
      return sendJson(res, 200, c.o.sampler.latest ?? {});
    case "/api/session":
      return sendJson(res, 200, {
        allowChanges: c.o.allowChanges,
        ...(c.o.allowChanges ? { csrf: c.auth.csrf } : {}),
      });
  }
  const asset = c.assets.get(path);
  if (!asset) return refuse(res, "MASQ_ERR_NO_SUCH_ENDPOINT", `no such page ${path}`);
  res.writeHead(200, { ...SECURITY_HEADERS, "content-type": asset.type, "cache-control": "no-cache" });
  res.end(req.method === "HEAD" ? undefined : asset.body);
}

/** The first event a page gets: the history the charts start from, and the latest snapshot. */
function hello(sampler: Sampler): string {
  const body: { history: Snapshot["sample"][]; snapshot: Snapshot | null } = {
    history: sampler.history,
    snapshot: sampler.latest ?? null,
  };
  return sseFrame("hello", JSON.stringify(body));
}

async function changeForwards(
  req: IncomingMessage,
  res: ServerResponse,
  c: Context,
  path: string,
): Promise<void> {
  const fw = c.o.forwards;
  if (!c.o.allowChanges || !fw)
    return refuse(res, "MASQ_ERR_WEB_READ_ONLY", "this dashboard is read-only ([web] allow_changes = false)");
  const why = c.auth.changeRefusal(req);
  if (why !== undefined) return refuse(res, "MASQ_ERR_WEB_FORBIDDEN", why);
  if (path === "/api/forwards" && req.method === "POST") {
    if (!/^application\/json\b/.test(req.headers["content-type"] ?? ""))
      return refuse(res, "MASQ_ERR_BAD_REQUEST", "the body must be application/json");
    return sendJson(res, 201, await fw.add(await readJson(req, MAX_BODY)));
  }
  if (path.startsWith("/api/forwards/") && req.method === "DELETE") {
    let key: string;
    try {
      key = decodeURIComponent(path.slice("/api/forwards/".length));
    } catch {
      return refuse(res, "MASQ_ERR_BAD_REQUEST", "malformed %-escape");
    }
    if (key !== "") return sendJson(res, 200, await fw.remove(key));
  }
  return refuse(res, "MASQ_ERR_METHOD_NOT_ALLOWED", `method ${req.method} not allowed on ${path}`);
}

function refuse(res: ServerResponse, code: ErrorCode, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, httpStatusOf(code), { error: message, code });
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    "content-type": "application/json",
    "cache-control": "no-store",
  });
  res.end(`${JSON.stringify(body)}\n`);
}
