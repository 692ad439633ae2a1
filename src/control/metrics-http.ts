// Prometheus scrapes HTTP over TCP, not the control socket: a small listener that serves the
// metrics registry's text on GET /metrics (and nothing else). Loopback by default; anywhere else
// the counters show what the gateway carries, so masq warns about it.
import { createServer, type Server } from "node:http";
import { type AddressInfo, isIP } from "node:net";
import type { Registry } from "prom-client";
import type { createLogger } from "./log.ts";

export interface Listen {
  host: string;
  port: number;
}

/** "127.0.0.1:9753", "[::1]:9753" or ":9753" (all addresses) → host and port; throws naming the problem. */
export function parseListen(text: string): Listen {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const host = m ? (m[1] ?? m[2]) : "";
  const port = Number(m?.[3]);
  const hostOk =
    m?.[1] !== undefined ? isIP(host) === 6 : host === "" || host === "localhost" || isIP(host) === 4;
  if (!m || !hostOk || port < 1 || port > 65535)
    throw new Error(`${JSON.stringify(text)} is not address:port (e.g. 127.0.0.1:9753, [::1]:9753 or :9753)`);
  return { host: host === "" ? "0.0.0.0" : host, port };
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

export class MetricsListener {
  private constructor(
    private readonly server: Server,
    readonly address: AddressInfo,
  ) {}

  static async start(listen: Listen, registry: Registry): Promise<MetricsListener> {
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("masq serves GET /metrics here\n");
        return;
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("GET only\n");
        return;
      }
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(req.method === "HEAD" ? undefined : body);
        },
        (err: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${String(err)}\n`);
        },
      );
    });
    // A scraper holds its connection open between scrapes; do not let that delay masq's exit.
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listen.port, listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return new MetricsListener(server, server.address() as AddressInfo);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** The Prometheus listener of `[metrics] listen`, or undefined when it is off. */
export async function serveMetrics(
  cfg: { metrics: { listen?: string } },
  metrics: Registry,
  log: ReturnType<typeof createLogger>,
): Promise<MetricsListener | undefined> {
  if (cfg.metrics.listen === undefined) return undefined;
  const listen = parseListen(cfg.metrics.listen);
  const listener = await MetricsListener.start(listen, metrics);
  const url = `http://${cfg.metrics.listen}/metrics`;
  if (isLoopback(listen.host)) log.info({ url }, "Prometheus metrics served");
  else
    log.warn(
      { url },
      "Prometheus metrics served beyond loopback: anyone who reaches this address sees the gateway's traffic counters",
    );
  return listener;
}
