// Starting masq as a real daemon process in a lab's gateway namespace, as a person would with
// `masq run`; used by `masq lab`, the end-to-end tests and the end-to-end benchmark.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_STATE_DIR } from "../host/apply.ts";
import type { Lab, LabProcess, MasqMode } from "./netns.ts";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository (or installed package) root: src/lab and dist/lab both sit two levels down. */
export const PACKAGE_ROOT = join(here, "..", "..");
export const MASQ_BIN = join(PACKAGE_ROOT, "bin", "masq.js");

/**
 * argv that runs one of the lab's own scripts (inet-service …) with this Node. From the sources
 * (the tests run under tsx) the built copy is used when it is at least as new as its source, as
 * the masq CLI itself runs from dist/: compiling a script with tsx at every start took over 10 s
 * on a loaded 2-core machine and timed out a test's wait for the service.
 */
export function labScript(name: string): string[] {
  if (!import.meta.url.endsWith(".ts")) return [process.execPath, join(here, `${name}.js`)];
  const source = join(here, `${name}.ts`);
  const built = join(PACKAGE_ROOT, "dist", "lab", `${name}.js`);
  if (existsSync(built) && statSync(built).mtimeMs >= statSync(source).mtimeMs)
    return [process.execPath, built];
  return [process.execPath, "--import", "tsx", source];
}

export interface MasqProcessOptions {
  /** Extra flags for `masq run` (e.g. ["--filtering", "endpoint-independent"]). */
  flags?: string[];
  /** A TOML config file for `masq run --config`. */
  config?: string;
  /** The inside TUN's name for --tun (default masq0); null: no --tun, the config file names it. */
  tun?: string | null;
}

/**
 * What starting masq needs of a lab's gateway (a MasqNetwork is one; so is each gateway of the
 * scale-out lab): its namespace and interfaces, and in pool mode the address(es) for --address.
 */
export interface MasqGateway {
  lab: Lab;
  mode: MasqMode;
  publicAddr: string;
  gate: { ns: string; lan: string; wan: string };
}

/** masq's exit after SIGTERM: undoing its host setup is a few dozen `ip` commands. */
const STOP_GRACE_MS = 30_000;
/** Start-up to "masq ready": host setup, TUN, control socket; slow while the machine is busy. */
const READY_TIMEOUT_MS = 60_000;

export interface MasqProcess {
  proc: LabProcess;
  socket: string;
  /** Runs a masq client command (conns, stats …) against this daemon; returns stdout. */
  cli(args: string[]): Promise<string>;
  /** SIGTERM and wait for a clean exit; returns the exit code. */
  stop(): Promise<number | null>;
}

/** The control socket startMasq gives the masq of a lab's gateway. */
export function masqSocket(net: MasqGateway): string {
  return `/run/masq/${net.gate.ns}.sock`;
}

/** The argv of `masq run` in a lab's gateway, as startMasq runs it. */
export function masqRunArgv(net: MasqGateway, opts: MasqProcessOptions = {}): string[] {
  if (!existsSync(join(PACKAGE_ROOT, "dist", "cli", "main.js")))
    throw new Error("masq is not built: run `npm ci` (or `npm run build`) first");
  return [
    process.execPath,
    MASQ_BIN,
    "run",
    "--inside",
    net.gate.lan,
    "--outside",
    net.gate.wan,
    ...(opts.tun === null ? [] : ["--tun", opts.tun ?? "masq0"]),
    "--socket",
    masqSocket(net),
    ...(net.mode === "pool" ? ["--address", net.publicAddr] : []),
    ...(opts.config ? ["--config", opts.config] : []),
    ...(opts.flags ?? []),
    ...workersFromEnv(opts.flags),
  ];
}

/**
 * `MASQ_E2E_WORKERS=N`: every masq the tests start runs with `--workers N` unless the test names
 * its own, so the end-to-end suites can be run again over several workers (issue 13).
 */
function workersFromEnv(flags: readonly string[] = []): string[] {
  const n = process.env.MASQ_E2E_WORKERS;
  if (n === undefined || n === "" || flags.includes("--workers")) return [];
  return ["--workers", n];
}

export async function startMasq(net: MasqGateway, opts: MasqProcessOptions = {}): Promise<MasqProcess> {
  const socket = masqSocket(net);
  const argv = masqRunArgv(net, opts);
  const proc = net.lab.spawn(net.gate.ns, argv, { env: { ...process.env, MASQ_LOG_FORMAT: "json" } });
  await proc.waitFor(/masq ready/, READY_TIMEOUT_MS);
  return {
    proc,
    socket,
    async cli(args: string[]) {
      const r = await net.lab.exec(net.gate.ns, [process.execPath, MASQ_BIN, ...args, "--socket", socket], {
        timeoutMs: 10_000,
      });
      if (r.code !== 0) throw new Error(`masq ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
      return r.stdout;
    },
    async stop() {
      await proc.kill("SIGTERM", STOP_GRACE_MS);
      return proc.exitCode;
    },
  };
}

/** Files of the lab's masq still in the state dir (its socket and state files carry the gateway's namespace name). */
export function leftInStateDir(gateNs: string): string[] {
  try {
    return readdirSync(DEFAULT_STATE_DIR).filter((f) => f.includes(gateNs));
  } catch {
    return [];
  }
}
