// masq's process on the bench's masq side: started, stopped, restarted (a fresh flow table when a
// test's mappings would crowd the next one out), and stopped cleanly on Ctrl-C.
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { exitedPid } from "./cpu.ts";
import { oneLine, type Side } from "./measure.ts";

export interface Masq {
  proc: MasqProcess | null;
  error: string | null;
  configPath: string;
  /** Extra flags for `masq run` (--masq-arg). */
  flags: readonly string[];
  /** Ports of masq's range the flow test has taken since masq started (held for the UDP timeout). */
  flowPortsUsed: number;
  /**
   * The short-connection test ran since masq started: its mappings hold the first inside host's
   * share of the TCP ports for the transitory timeout, so its next TCP figure needs a fresh masq.
   */
  shortRan: boolean;
  starts: number;
}

const log = (s: string) => process.stderr.write(`${s}\n`);

export function errText(e: unknown): string {
  return oneLine(e instanceof Error ? e.message : String(e), 800);
}

export async function startMasqOn(side: Side, m: Masq): Promise<void> {
  try {
    m.proc = await startMasq(side.net, { config: m.configPath, flags: [...m.flags] });
    m.starts += 1;
    m.flowPortsUsed = 0;
    m.shortRan = false;
    m.error = null;
  } catch (e) {
    m.proc = null;
    m.error = `masq did not start: ${errText(e)}`;
  }
}

export async function stopMasq(m: Masq): Promise<void> {
  const p = m.proc;
  if (!p) return;
  m.proc = null;
  try {
    const code = await p.stop();
    if (code !== 0 && code !== null)
      log(`masq exited with code ${code}: ${oneLine(p.proc.stderr.slice(-400))}`);
  } catch (e) {
    log(`stopping masq: ${errText(e)}`);
  }
}

export async function restartMasq(m: Masq, side: Side, why: string): Promise<void> {
  log(`${why}: restarting masq`);
  await stopMasq(m);
  await startMasqOn(side, m);
  if (m.error) log(m.error);
}

/**
 * Ctrl-C: the lab toolkit's own handler (installed with the first lab, so it runs after this
 * one) SIGKILLs everything in our namespaces and deletes them. masq gets a SIGTERM and up to 5 s
 * first, so it removes its state file and control socket (outside the namespaces) itself.
 * Synchronous: no awaiting in a signal handler that the next one ends with process.exit.
 */
export function onSignal(m: Masq, signal: NodeJS.Signals): void {
  const pid = m.proc?.proc.running ? m.proc.proc.pid : -1;
  if (pid > 0) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 250 && !exitedPid(pid); i++) Atomics.wait(nap, 0, 0, 20);
  }
  if (process.listenerCount(signal) === 0) process.exit(signal === "SIGINT" ? 130 : 143);
}
