// The client side of the control API, for `masq conns`, `masq stats` and friends.
import { request } from "node:http";

export class ControlClientError extends Error {}

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
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const json = (res.headers["content-type"] ?? "").startsWith("application/json");
        let body: unknown = text;
        if (json) {
          try {
            body = JSON.parse(text);
          } catch {
            return reject(new ControlClientError(`masq answered ${path} with invalid JSON`));
          }
        }
        if ((res.statusCode ?? 500) >= 400) {
          const msg = (body as { error?: string })?.error ?? text;
          return reject(new ControlClientError(`masq refused ${path}: ${msg}`));
        }
        resolve(body);
      });
    });
    req.on("timeout", () =>
      req.destroy(new ControlClientError(`masq did not answer within ${timeoutMs} ms`)),
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (err instanceof ControlClientError) return reject(err);
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED")
        return reject(
          new ControlClientError(`masq is not running (no control socket at ${socketPath}; see --socket)`),
        );
      if (err.code === "EACCES")
        return reject(new ControlClientError(`permission denied on ${socketPath}: run as root`));
      reject(new ControlClientError(`control socket ${socketPath}: ${err.message}`));
    });
    req.end(payload);
  });
}
