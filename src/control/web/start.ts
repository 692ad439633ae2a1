// Starting the dashboard from `masq run`'s configuration: the token file read, the sampler wired
// to the control API's handlers, the server listening.
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { ALGS } from "../../alg/algs.ts";
import { MasqError } from "../../errors/masq-error.ts";
import type { PinView } from "../../nat/view.ts";
import type { ForwardView } from "../../portmap/forwards.ts";
import type { ConnsEngine } from "../conns-listing.ts";
import type { StatsReply } from "../format.ts";
import { isLoopback, parseListen } from "../metrics-http.ts";
import type { ControlSource } from "../server.ts";
import type { WebConfig } from "../web-config.ts";
import { parseTokenFile } from "./auth.ts";
import { Sampler, type ScanningEngine } from "./sampler.ts";
import { WebServer } from "./server.ts";

export interface DashboardSources {
  engine: ConnsEngine | ScanningEngine;
  /** The control API (api-handlers.ts): its stats and forwards are what the page shows and changes. */
  api: ControlSource;
}

/** The token of `[web] token_file`; a file that cannot be read or holds no token is a config error. */
export function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new MasqError(
      "MASQ_ERR_CONFIG_INVALID",
      `web.token_file: cannot read ${file}: ${(err as Error).message}`,
    );
  }
  const token = parseTokenFile(text);
  if (typeof token !== "string")
    throw new MasqError("MASQ_ERR_CONFIG_INVALID", `web.token_file: ${file}: ${token.problem}`);
  return token;
}

export async function startDashboard(
  cfg: WebConfig,
  s: DashboardSources,
  log: Logger,
): Promise<WebServer | undefined> {
  if (cfg.listen === undefined) return undefined;
  const listen = parseListen(cfg.listen);
  const token = cfg.tokenFile === undefined ? undefined : readToken(cfg.tokenFile);
  const forwards = s.api.forwards;
  const sampler = new Sampler({
    engine: s.engine,
    stats: () => s.api.stats() as StatsReply,
    ...(forwards ? { forwards: () => forwards.list() as { forwards: ForwardView[]; pins: PinView[] } } : {}),
    algNames: new Set(ALGS.map((a) => a.name)),
    allowChanges: cfg.allowChanges,
  });
  const web = await WebServer.start({
    host: listen.host,
    port: listen.port,
    ...(token !== undefined ? { token } : {}),
    allowChanges: cfg.allowChanges,
    sampler,
    ...(forwards ? { forwards } : {}),
    onError: (err) => log.warn({ err }, "web dashboard: a snapshot failed"),
  });
  const url = `http://${cfg.listen}/`;
  const how = { url, token: token !== undefined, allowChanges: cfg.allowChanges };
  if (isLoopback(listen.host)) log.info(how, "web dashboard served");
  else
    log.warn(
      how,
      "web dashboard served beyond loopback (token required): anyone with the token sees the gateway's connections",
    );
  return web;
}
