// Who may see the dashboard, and who may change something through it.
//
// Beyond loopback the dashboard needs a token (`[web] token_file`): given as `Authorization:
// Bearer <token>` (scripts, curl) or once as `?token=<token>` in the address a person opens,
// which is answered with a session cookie (HttpOnly, so no script reads it; SameSite=Strict, so
// no other site's page sends it) and a redirect to the same address without the token, so it
// stays out of the history and the Referer. The cookie holds a value derived from the token, not
// the token. Every comparison is in constant time (crypto.timingSafeEqual over SHA-256 digests,
// which also makes the lengths equal), so the answer's timing tells nothing about the token.
//
// Changes (`allow_changes`) also need the CSRF token the page reads from /api/session (a
// same-origin read another site cannot make), sent back in a header a cross-site form cannot set,
// and an Origin, when the browser sends one, that is the dashboard's own.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

export const SESSION_COOKIE = "masq_session";
export const CSRF_HEADER = "x-masq-csrf";

/** Constant-time equality of two secrets of any length. */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The token of a token file: its first line, trimmed; too short a token is refused. */
export function parseTokenFile(text: string): string | { problem: string } {
  const token = (text.split("\n")[0] ?? "").trim();
  if (token.length < 16) return { problem: "the token must be at least 16 characters (on the first line)" };
  return token;
}

export type AuthResult =
  | { ok: true }
  /** The right token as `?token=`: set this cookie and redirect to `location`. */
  | { ok: "redirect"; cookie: string; location: string }
  | { ok: false };

export class WebAuth {
  /** Per start: a page loaded before a restart must load again before it may change anything. */
  readonly csrf = randomBytes(32).toString("hex");
  private readonly session: string | undefined;

  constructor(private readonly token: string | undefined) {
    this.session =
      token === undefined ? undefined : createHmac("sha256", token).update("masq web session").digest("hex");
  }

  get required(): boolean {
    return this.token !== undefined;
  }

  /** Whether `req` (whose URL is `url`) may read the dashboard. */
  check(req: IncomingMessage, url: URL): AuthResult {
    if (this.token === undefined || this.session === undefined) return { ok: true };
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      return m && secretsEqual(m[1], this.token) ? { ok: true } : { ok: false };
    }
    const cookie = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (cookie !== undefined && secretsEqual(cookie, this.session)) return { ok: true };
    const given = url.searchParams.get("token");
    if (given !== null && req.method === "GET" && secretsEqual(given, this.token)) {
      const clean = new URL(url);
      clean.searchParams.delete("token");
      return {
        ok: "redirect",
        cookie: `${SESSION_COOKIE}=${this.session}; HttpOnly; SameSite=Strict; Path=/`,
        location: `${clean.pathname}${clean.search}`,
      };
    }
    return { ok: false };
  }

  /**
   * Why a change request is not the dashboard's own page asking (undefined: it is): the CSRF
   * header must carry this start's token, and a browser's Origin and Sec-Fetch-Site must say the
   * request comes from the dashboard's own origin.
   */
  changeRefusal(req: IncomingMessage): string | undefined {
    const csrf = req.headers[CSRF_HEADER];
    if (typeof csrf !== "string" || !secretsEqual(csrf, this.csrf))
      return `missing or wrong ${CSRF_HEADER} header (reload the page)`;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host ?? ""}`)
      return `a change from origin ${origin} is refused`;
    const site = req.headers["sec-fetch-site"];
    if (site !== undefined && site !== "same-origin" && site !== "none")
      return `a change from a ${site} page is refused`;
    return undefined;
  }
}

/** The value of cookie `name` in a Cookie header, if there. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
