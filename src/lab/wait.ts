// Waiting for a condition instead of sleeping a fixed time: a fixed sleep is either too short on
// a loaded machine (the test fails at random) or too long everywhere else. Every wait here is
// bounded; its deadline is generous because it costs nothing when the condition comes early.
import type { Lab } from "./netns.ts";

export interface WaitOptions {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Time between two checks (default 100 ms). */
  intervalMs?: number;
}

/**
 * Polls `check` until it returns something other than undefined/false, and resolves with that.
 * Rejects, naming `what` and the last value `describe` gave, when the deadline passes.
 */
export async function waitUntil<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  opts: WaitOptions & { describe?: () => string | Promise<string> } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) {
      const detail = opts.describe ? `: ${await opts.describe()}` : "";
      throw new Error(`${what}: not within ${timeoutMs} ms${detail}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/**
 * Waits until a socket listens on `port` (TCP) or is bound to it (UDP) in namespace `ns`: the
 * readiness check for a server that says nothing when it is ready (vsftpd, in.tftpd, socat).
 */
export async function waitListening(
  lab: Lab,
  ns: string,
  proto: "tcp" | "udp",
  port: number,
  opts: WaitOptions = {},
): Promise<void> {
  const flag = proto === "tcp" ? "-Hlnt" : "-Hlnu";
  await waitUntil(
    `nothing listening on ${proto} port ${port} in ${ns}`,
    async () => (await lab.run(ns, ["ss", flag, `sport = :${port}`])).trim() !== "",
    { intervalMs: 50, ...opts },
  );
}
