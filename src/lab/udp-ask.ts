// One UDP request and its answer with socat, as the lab and the end-to-end tests ask the UDP echo
// services. `echo text | socat - UDP:…` would do it, but socat ends half a second after its
// input ends (its -t), answer or not: a reply that a busy machine delivers later is lost, and
// the exchange fails at random. Here socat's input stays open until the answer is in.
import type { ExecResult, Lab } from "./netns.ts";

export interface UdpAskOptions {
  /** Local port to send from (socat's sourceport, with reuseaddr); default: any. */
  sourcePort?: number;
  /** How long to wait for the answer (default 15 s). */
  timeoutMs?: number;
}

/**
 * Sends `text` (one line) from namespace `ns` to `host`:`port` and resolves once a line comes
 * back, or the timeout passes. code 0 with the answer on stdout; otherwise non-zero, with what
 * socat said on stderr.
 */
export async function udpAsk(
  lab: Lab,
  ns: string,
  host: string,
  port: number,
  text: string,
  opts: UdpAskOptions = {},
): Promise<ExecResult> {
  const src = opts.sourcePort === undefined ? "" : `,sourceport=${opts.sourcePort},reuseaddr`;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const p = lab.spawn(
    ns,
    ["socat", "-T", String(Math.ceil(timeoutMs / 1000)), "-", `UDP:${host}:${port}${src}`],
    {
      stdin: true,
    },
  );
  p.child.stdin?.write(`${text}\n`);
  let answered = true;
  try {
    await p.waitFor(/\n/, timeoutMs);
  } catch {
    answered = false;
  }
  p.child.stdin?.end();
  if (!(await p.waitExit(5000))) await p.kill("SIGKILL", 1000);
  const code = answered && p.exitCode === 0 ? 0 : (p.exitCode ?? 1) || 1;
  return { stdout: p.stdout, stderr: p.stderr, code, signal: p.exitSignal };
}
