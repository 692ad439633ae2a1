// The masq CLI in a child process, for unit tests whose own process serves the control socket
// (so the CLI must not run in it and block it).
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

/** `node -e` code that runs the CLI's main() with the process's arguments. */
export const CLI_SCRIPT = `const { main } = await import(${JSON.stringify(MAIN)}); process.exitCode = await main(process.argv.slice(1));`;

/** argv that runs the CLI from the sources (append its arguments). */
export const CLI_ARGV = [process.execPath, "--import", "tsx", "--input-type=module", "-e", CLI_SCRIPT];

export function cli(args: string[], timeoutMs = 30_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      CLI_ARGV[0],
      [...CLI_ARGV.slice(1), ...args],
      { timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, out, stderr) => {
        const c = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ code: typeof c === "number" ? c : 1, out, err: stderr });
      },
    );
  });
}
