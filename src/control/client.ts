// The client side of the control API, for `masq conns`, `masq stats` and friends.
import { type ClientRequest, type IncomingMessage, request } from "node:http";
import { type ErrorCode, isErrorCode } from "../errors/codes.ts";
import { MasqError } from "../errors/masq-error.ts";

/** masq refused (with the code it sent) or could not be reached (a code of the client's own). */
export class ControlClientError extends MasqError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = "ControlClientError";
  }
}

/** GET `path` from the daemon at `socketPath`; returns the body (JSON parsed when it is JSON). */
export function controlGet(socketPath: string, path: string, timeoutMs = 10_000): Promise<unknown> {
  return controlCall(socketPath, "GET", path, undefined, timeoutMs);
}

/** `method` `path` with an optional JSON body; returns the body (JSON parsed when it is JSON). */
export function controlCall(
  socketPath: string,
  method: string,
  path: string,
  body?: object,
  timeoutMs = 10_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers = payload === undefined ? {} : { "content-type": "application/json" };
    const req = request({ socketPath, path, method, headers, timeout: timeoutMs }, (res) => {
      readBody(res).then((text) => {
        let body: unknown = text;
        if (isJson(res)) {
          try {
            body = JSON.parse(text);
          } catch {
            return reject(
              new ControlClientError("MASQ_ERR_NO_ANSWER", `masq answered ${path} with invalid JSON`),
            );
          }
        }
        if ((res.statusCode ?? 500) >= 400) return reject(refusal(path, body, text));
        resolve(body);
      }, reject);
    });
    onSocketProblems(req, socketPath, timeoutMs, reject);
    req.end(payload);
  });
}

/**
 * GET `path` and copy the body to `out` as it arrives (the connection table can be many MB).
 * `timeoutMs` bounds the wait for the answer to begin; once it streams, a reader that takes its
 * time (a pager) is no reason to give up.
 */
export function controlStream(
  socketPath: string,
  path: string,
  out: NodeJS.WritableStream,
  timeoutMs = 10_000,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: "GET", timeout: timeoutMs }, (res) => {
      if ((res.statusCode ?? 500) >= 400) {
        readBody(res).then((text) => {
          let body: unknown = text;
          try {
            body = isJson(res) ? JSON.parse(text) : text;
          } catch {
            // the text itself says what went wrong
          }
          reject(refusal(path, body, text));
        }, reject);
        return;
      }
      req.setTimeout(0);
      // A reader that stopped (`masq conns | head`) is not an error.
      out.on("error", (err: NodeJS.ErrnoException) => {
        req.destroy();
        if (err.code === "EPIPE") resolve();
        else reject(err);
      });
      res.pipe(out, { end: false });
      res.once("error", () => undefined);
      res.once("close", () => {
        if (res.complete) resolve();
        else
          reject(
            new ControlClientError("MASQ_ERR_NO_ANSWER", `masq closed ${path} before the end of the answer`),
          );
      });
    });
    onSocketProblems(req, socketPath, timeoutMs, reject);
    req.end();
  });
}

function isJson(res: IncomingMessage): boolean {
  return (res.headers["content-type"] ?? "").startsWith("application/json");
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    res.on("error", reject);
  });
}

/** The daemon's `{ error, code }`; a body without a known code (not masq's) is an internal error. */
function refusal(path: string, body: unknown, text: string): ControlClientError {
  const b = body as { error?: string; code?: unknown } | null;
  const code = isErrorCode(b?.code) ? b.code : "MASQ_ERR_INTERNAL";
  return new ControlClientError(code, `masq refused ${path}: ${b?.error ?? text}`);
}

/** A timeout, a missing socket or a permission problem as one clear line. */
function onSocketProblems(
  req: ClientRequest,
  socketPath: string,
  timeoutMs: number,
  reject: (err: Error) => void,
): void {
  req.on("timeout", () =>
    req.destroy(new ControlClientError("MASQ_ERR_NO_ANSWER", `masq did not answer within ${timeoutMs} ms`)),
  );
  req.on("error", (err: NodeJS.ErrnoException) => {
    if (err instanceof ControlClientError) return reject(err);
    if (err.code === "ENOENT" || err.code === "ECONNREFUSED")
      return reject(
        new ControlClientError(
          "MASQ_ERR_NOT_RUNNING",
          `masq is not running (no control socket at ${socketPath}; see --socket)`,
        ),
      );
    if (err.code === "EACCES")
      return reject(
        new ControlClientError(
          "MASQ_ERR_SOCKET_PERMISSION",
          `permission denied on ${socketPath}: run as root`,
        ),
      );
    reject(new ControlClientError("MASQ_ERR_INTERNAL", `control socket ${socketPath}: ${err.message}`));
  });
}
