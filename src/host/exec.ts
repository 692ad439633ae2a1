// Run an external program (mostly `ip`, `sysctl`, `nft`) with an argv array: no shell, so no
// quoting bugs and no injection through interface names. Failures carry the command line and
// the program's stderr, because "exit code 2" alone says nothing about which rule was refused.

import { execFile } from "node:child_process";

export interface ExecOptions {
  /** Run inside this named network namespace (`ip netns exec NAME ...`). */
  netns?: string;
  /** Kill the program after this many milliseconds (default 10 s). */
  timeoutMs?: number;
  /** Text written to the program's stdin (e.g. an nft ruleset for `nft -f -`). */
  input?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when the program was killed by a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A command that could not be run or exited non-zero. */
export class CommandError extends Error {
  readonly argv: readonly string[];
  readonly stderr: string;
  readonly code: number | null;

  constructor(
    argv: readonly string[],
    result: Pick<ExecResult, "stderr" | "code" | "signal">,
    cause?: unknown,
  ) {
    const how =
      result.signal !== null
        ? `killed by ${result.signal}`
        : result.code === null
          ? "could not be started"
          : `exited with code ${result.code}`;
    const detail = result.stderr.trim() || (cause instanceof Error ? cause.message : "");
    super(`command failed: ${formatArgv(argv)} (${how})${detail ? `: ${detail}` : ""}`, { cause });
    this.name = "CommandError";
    this.argv = argv;
    this.stderr = result.stderr;
    this.code = result.code;
  }
}

/** Shell-like rendering of an argv, for messages and logs only (never executed). */
export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(" ");
}

/** The argv that runs `argv` inside `netns` (or `argv` itself when no namespace is given). */
export function inNetns(netns: string | undefined, argv: readonly string[]): string[] {
  return netns ? ["ip", "netns", "exec", netns, ...argv] : [...argv];
}

/** Run a program and collect its output; never throws for a non-zero exit (see `run`). */
export function exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const full = inNetns(opts.netns, argv);
  if (full.length === 0) return Promise.reject(new Error("exec: empty argv"));
  return new Promise((resolve) => {
    const child = execFile(
      full[0],
      full.slice(1),
      { timeout: opts.timeoutMs ?? 10_000, killSignal: "SIGKILL", maxBuffer: 16 << 20, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr, code: 0, signal: null });
          return;
        }
        const e = err as NodeJS.ErrnoException & { code?: unknown; signal?: NodeJS.Signals | null };
        // execFile reports a spawn failure with a string code (ENOENT) and an exit with a number.
        const code = typeof e.code === "number" ? e.code : null;
        const spawnError = typeof e.code === "string" ? `${e.code}: ${e.message}` : "";
        resolve({ stdout: stdout ?? "", stderr: stderr || spawnError, code, signal: e.signal ?? null });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Run a program; resolve with its stdout, or reject with a CommandError naming it. */
export async function run(argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await exec(argv, opts);
  if (r.code !== 0) throw new CommandError(inNetns(opts.netns, argv), r);
  return r.stdout;
}

/**
 * Errors that mean "the thing to remove is not there" (or, for re-adding, "is there already"):
 * the TUN and its routes vanish together when the device is closed, and a namespace may be gone.
 */
export function isAlreadyGone(stderr: string): boolean {
  return /No such file or directory|No such process|No such device|Cannot find device|does not exist|File exists|Cannot open network namespace/i.test(
    stderr,
  );
}
