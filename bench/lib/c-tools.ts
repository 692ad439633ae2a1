// The bench's own traffic programs (bench/c/*.c), compiled from source at the start of every run
// with the C compiler scripts/setup.sh installs (gcc), into the run's temporary directory: no
// binary is committed, and a changed source is what runs. C because a generator must never be
// the limit of the path it measures (issue 13): Python's sendmmsg blaster and raw-socket flow
// generator held the kernel side back.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../../src/host/exec.ts";

/** The programs, by the name of their source in bench/c (without .c). */
export const C_TOOLS = ["conn-rate", "udp-blast", "udp-echo", "flow-gen", "udp-rtt"] as const;
export type CTool = (typeof C_TOOLS)[number];
export type CTools = Record<CTool, string>;

const SOURCE_DIR = fileURLToPath(new URL("../c/", import.meta.url));

/** Compiles one program into `dir`; its path. */
export async function buildCTool(dir: string, name: CTool): Promise<string> {
  const out = join(dir, name);
  await run(["gcc", "-O2", "-Wall", "-Wextra", "-o", out, join(SOURCE_DIR, `${name}.c`)], {
    timeoutMs: 60_000,
  });
  return out;
}

/** Compiles every program into `dir` (which the caller removes). */
export async function buildCTools(dir: string): Promise<CTools> {
  const paths = await Promise.all(C_TOOLS.map((n) => buildCTool(dir, n)));
  return Object.fromEntries(C_TOOLS.map((n, i) => [n, paths[i]])) as CTools;
}
