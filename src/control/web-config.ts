// The `[web]` section of the config file (the live dashboard, src/control/web) and `--web`: its
// schema, how it is applied and the check across its keys, apart from config.ts so that file
// stays the list of sections.
import * as v from "valibot";
import { isLoopback, parseListen } from "./metrics-http.ts";

export interface WebConfig {
  /** "address:port" the dashboard listens on; undefined: off (the default). */
  listen?: string;
  /** A file holding the token a browser must present; required beyond loopback. */
  tokenFile?: string;
  /** Forwards may be added and removed from the page (else the page is read-only). */
  allowChanges: boolean;
}

export function defaultWebConfig(): WebConfig {
  return { allowChanges: false };
}

export const webSectionSchema = v.strictObject({
  listen: v.optional(v.string('must be "address:port", e.g. "127.0.0.1:8080"')),
  token_file: v.optional(v.pipe(v.string("must be a file name"), v.minLength(1, "must be a file name"))),
  allow_changes: v.optional(v.boolean()),
});

export type WebSection = v.InferOutput<typeof webSectionSchema>;

interface Problem {
  key: string;
  problem: string;
}

/** Applies a parsed `[web]` section; a bad value is returned as its key and problem. */
export function applyWebSection(w: WebConfig, f: WebSection): Problem | undefined {
  if (f.listen !== undefined) {
    const bad = listenProblem(f.listen);
    if (bad) return { key: "web.listen", problem: bad };
    w.listen = f.listen.trim();
  }
  if (f.token_file !== undefined) w.tokenFile = f.token_file;
  if (f.allow_changes !== undefined) w.allowChanges = f.allow_changes;
  return undefined;
}

/** Why `text` is no listen address, or undefined when it is one. */
export function listenProblem(text: string): string | undefined {
  try {
    parseListen(text);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * The check across keys, after the flags: beyond loopback anyone who reaches the address would
 * see the gateway's connections (and, with allow_changes, open ports into the LAN), so a token
 * is required there. `listenKey` names what set the address (`web.listen` or `--web`).
 */
export function webPlanProblem(w: WebConfig, listenKey: string): Problem | undefined {
  if (w.listen === undefined || w.tokenFile !== undefined) return undefined;
  if (isLoopback(parseListen(w.listen).host)) return undefined;
  return {
    key: listenKey,
    problem: `${w.listen} is beyond loopback: set web.token_file (a file holding the token browsers must present)`,
  };
}
