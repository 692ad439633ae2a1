// Apply a host plan and remember exactly what was done, so that exit (normal, SIGINT/SIGTERM)
// and the next start after a crash remove exactly that, like wg-quick does.
//
// The record is a JSON state file, rewritten atomically (write + rename) before and after every
// step: a step is recorded as "pending" before its command runs and "applied" after. A crash at
// any moment therefore leaves a record that covers everything that may have been changed; undoing
// a pending step that never took effect is harmless because undo tolerates "already gone".

import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { MasqError } from "../errors/masq-error.ts";
import { CommandError, type ExecOptions, exec, formatArgv, isAlreadyGone, run } from "./exec.ts";
import { type Footprint, removeLeftovers } from "./leftovers.ts";
import { isLiveMasq, processStartTime } from "./owner.ts";
import { fillPrior, type HostStep, PRIOR, type Prior } from "./steps.ts";

export { isAlreadyGone } from "./exec.ts";
export { isLiveMasq, processStartTime } from "./owner.ts";

export const DEFAULT_STATE_DIR = "/run/masq";
const STATE_VERSION = 1;

/** The subset of a pino logger used here; pino's Logger fits. */
export interface HostLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const silent: HostLogger = { info() {}, warn() {} };

export interface HostOptions {
  /** Run every command inside this named network namespace (tests, `masq lab`). */
  netns?: string;
  log?: HostLogger;
  /** Per-command timeout (default 10 s). */
  timeoutMs?: number;
}

interface RecordedStep {
  what: string;
  undo: string[];
  status: "pending" | "applied";
  /** The value the step overwrote (sysctl, MTU), already substituted into `undo`. */
  prior?: string;
}

export interface HostState {
  version: number;
  /** The process that applied the setup, and its start time (to tell a reused pid apart). */
  pid: number;
  pidStart: string | null;
  netns: string | null;
  createdAt: string;
  steps: RecordedStep[];
}

export interface UndoReport {
  /** Steps undone. */
  undone: string[];
  /** Steps whose object was already gone (e.g. routes that vanished with the TUN). */
  gone: string[];
  /** Steps whose undo failed for another reason (logged; the state file is removed anyway). */
  failed: Array<{ what: string; error: string }>;
}

/**
 * The state file for a TUN: `<dir>/<tun>.<netns inode>.json`. The namespace's inode keeps two
 * gateways in different namespaces that both use "tun0" (parallel e2e tests) apart, and stays
 * the same when masq restarts in the same namespace, which is what crash recovery needs.
 */
export function defaultStateFile(tun: string, opts: { dir?: string; netns?: string } = {}): string {
  const nsPath = opts.netns ? `/run/netns/${opts.netns}` : "/proc/self/ns/net";
  let ino = "unknown";
  try {
    ino = String(statSync(nsPath).ino);
  } catch {
    // Namespace not mounted (yet): fall back to a name-only file.
  }
  return join(opts.dir ?? DEFAULT_STATE_DIR, `${tun}.${opts.netns ?? "netns"}-${ino}.json`);
}

/**
 * The name `ip netns` knows this process's network namespace by (the entry of /run/netns that is
 * the same namespace), or undefined (the root namespace, or one without a name). State files
 * carry it: a namespace's inode alone is reused once the namespace is gone, and a new namespace
 * must not inherit a dead one's leftovers.
 */
export function currentNetnsName(netnsDir = "/run/netns"): string | undefined {
  let self: { ino: number; dev: number };
  let names: string[];
  try {
    self = statSync("/proc/self/ns/net");
    names = readdirSync(netnsDir);
  } catch {
    return undefined;
  }
  for (const name of names) {
    try {
      const st = statSync(join(netnsDir, name));
      if (st.ino === self.ino && st.dev === self.dev) return name;
    } catch {
      // Deleted while we looked.
    }
  }
  return undefined;
}

/**
 * Removes state files of named namespaces that no longer exist: whatever they recorded went with
 * the namespace, and nothing is left to undo. Returns the files removed.
 */
export function removeOrphanStateFiles(dir = DEFAULT_STATE_DIR, netnsDir = "/run/netns"): string[] {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const f of files) {
    const m = /^[^.]+\.(.+)-(\d+|unknown)\.(json|snapshot)$/.exec(f);
    if (!m || m[1] === "netns") continue;
    let alive = true;
    try {
      statSync(join(netnsDir, m[1]));
    } catch {
      alive = false;
    }
    if (alive) continue;
    rmSync(join(dir, f), { force: true });
    removed.push(f);
  }
  return removed;
}

/**
 * Apply the steps in order, recording each in `stateFile`. If a step fails, undo what was
 * applied (reverse order), remove the state file and throw an error naming the step.
 */
export async function applyHostSetup(
  plan: HostStep[],
  stateFile: string,
  opts: HostOptions = {},
): Promise<void> {
  const log = opts.log ?? silent;
  if (exists(stateFile)) {
    throw new Error(`state file ${stateFile} already exists: a previous run left it; clean leftovers first`);
  }
  mkdirSync(dirname(stateFile), { recursive: true, mode: 0o700 });
  const state: HostState = {
    version: STATE_VERSION,
    pid: process.pid,
    pidStart: processStartTime(process.pid),
    netns: opts.netns ?? null,
    createdAt: new Date().toISOString(),
    steps: [],
  };
  writeState(stateFile, state);

  for (const step of plan) {
    let recorded: RecordedStep;
    try {
      const prior = step.prior ? await readPrior(step.prior, opts) : undefined;
      if (prior === undefined && step.undo.some((a) => a.includes(PRIOR)))
        throw new Error(`step "${step.what}" has ${PRIOR} in its undo but no prior value`);
      recorded = {
        what: step.what,
        undo: prior === undefined ? step.undo : fillPrior(step.undo, prior),
        status: "pending",
        ...(prior === undefined ? {} : { prior }),
      };
      state.steps.push(recorded);
      writeState(stateFile, state);
      await run(step.apply, cmdOpts(opts));
    } catch (err) {
      // The failed command changed nothing (ip and sysctl are all-or-nothing), so drop its record.
      if (state.steps.at(-1)?.status === "pending") state.steps.pop();
      writeState(stateFile, state);
      const report = await undoSteps(stateFile, state, opts);
      rmSync(stateFile, { force: true });
      const rollback =
        report.failed.length > 0
          ? `; rollback also failed for: ${report.failed.map((f) => `${f.what} (${f.error})`).join(", ")}`
          : "";
      throw new MasqError(
        "MASQ_ERR_HOST_SETUP",
        `host setup failed at step "${step.what}": ${errorText(err)}${rollback}`,
        { cause: err },
      );
    }
    recorded.status = "applied";
    writeState(stateFile, state);
    log.info({ step: step.what, cmd: formatArgv(step.apply) }, "host setup");
  }
}

/**
 * Applies one more step while masq runs (a forward's policy rule), recorded in `stateFile` like
 * the start-up steps, so exit and the crash cleanup of the next start undo it too.
 */
export async function applyRecordedStep(
  step: HostStep,
  stateFile: string,
  opts: HostOptions = {},
): Promise<void> {
  const state = readState(stateFile);
  if (!state) throw new Error(`no host state file ${stateFile}: masq's host setup is not in place`);
  if (step.prior) throw new Error(`step "${step.what}": runtime steps cannot have a prior value`);
  const recorded: RecordedStep = { what: step.what, undo: step.undo, status: "pending" };
  state.steps.push(recorded);
  writeState(stateFile, state);
  try {
    await run(step.apply, cmdOpts(opts));
  } catch (err) {
    state.steps.splice(state.steps.indexOf(recorded), 1);
    writeState(stateFile, state);
    throw err;
  }
  recorded.status = "applied";
  writeState(stateFile, state);
  (opts.log ?? silent).info({ step: step.what, cmd: formatArgv(step.apply) }, "host setup");
}

/**
 * Undoes the newest recorded step named `what` (added by applyRecordedStep) and forgets it;
 * false when there is none. An object already gone counts as undone.
 */
export async function undoRecordedStep(
  what: string,
  stateFile: string,
  opts: HostOptions = {},
): Promise<boolean> {
  const state = readState(stateFile);
  if (!state) return false;
  let i = state.steps.length - 1;
  while (i >= 0 && state.steps[i].what !== what) i--;
  if (i < 0) return false;
  const step = state.steps[i];
  const r = await exec(step.undo, cmdOpts({ ...opts, netns: state.netns ?? opts.netns }));
  if (r.code !== 0 && !isAlreadyGone(r.stderr)) throw new CommandError(step.undo, r);
  state.steps.splice(i, 1);
  writeState(stateFile, state);
  (opts.log ?? silent).info({ step: what, cmd: formatArgv(step.undo) }, "host undo");
  return true;
}

/**
 * Undo everything recorded in `stateFile`, newest first, tolerating objects that are already
 * gone, then delete the file. Missing state file: nothing to do.
 */
export async function undoHostSetup(stateFile: string, opts: HostOptions = {}): Promise<UndoReport> {
  const state = readState(stateFile);
  if (!state) return { undone: [], gone: [], failed: [] };
  const report = await undoSteps(stateFile, state, { ...opts, netns: state.netns ?? opts.netns });
  rmSync(stateFile, { force: true });
  return report;
}

/**
 * `masq run` after `masq stop --keep-state`: takes over the setup the stopped masq left in place
 * (recorded in `stateFile`) instead of undoing it, so no packet leaves untranslated meanwhile: the
 * record is rewritten as this process's. Recorded steps for which `redo(what)` is true are undone
 * first, for the new run applies them again (the forwards' rules). Throws, changing nothing, when
 * there is no record or the masq it names is still running.
 */
export async function adoptHostSetup(
  stateFile: string,
  redo: (what: string) => boolean,
  opts: HostOptions = {},
): Promise<{ kept: number; undone: string[] }> {
  const state = readState(stateFile);
  if (!state) throw new Error(`no host state file ${stateFile}: the host setup is not recorded`);
  assertNotOwnedByLiveMasq(state, stateFile);
  state.pid = process.pid;
  state.pidStart = processStartTime(process.pid);
  writeState(stateFile, state);
  const undone: string[] = [];
  for (let i = state.steps.length - 1; i >= 0; i--) {
    const what = state.steps[i].what;
    if (redo(what) && (await undoRecordedStep(what, stateFile, opts))) undone.push(what);
  }
  (opts.log ?? silent).info(
    { stateFile, steps: state.steps.length - undone.length },
    "host setup taken over",
  );
  return { kept: state.steps.length - undone.length, undone };
}

/** A host state file that cannot be read as one (not JSON, unknown format). */
export class StateFileError extends Error {
  override name = "StateFileError";
}

export interface CleanupOptions extends HostOptions {
  /** What marks masq's objects: when given, the host is also searched for leftovers no record covers. */
  footprint?: Footprint;
}

/**
 * Called at start (and by `masq cleanup`): if `stateFile` was left by a run that is no longer
 * alive (a crash, SIGKILL), undo what it recorded and log it. A corrupt state file is kept aside
 * as `<file>.corrupt-<time>` and does not block: with a footprint, what is masq's is then found
 * on the host and removed (as it is when a record is missing). Returns the report, or undefined
 * if there was nothing to clean. Throws if the recorded process is still a running masq (another
 * masq owns this setup) or a running process holds one of masq's TUNs.
 */
export async function cleanLeftovers(
  stateFile: string,
  opts: CleanupOptions = {},
): Promise<UndoReport | undefined> {
  const log = opts.log ?? silent;
  const state = readStateOrSetAside(stateFile, log);
  let report: UndoReport | undefined;
  if (state) {
    assertNotOwnedByLiveMasq(state, stateFile);
    log.warn(
      { stateFile, pid: state.pid, since: state.createdAt, steps: state.steps.map((s) => s.what) },
      "cleaning up after a previous run that did not exit cleanly",
    );
    report = await undoHostSetup(stateFile, opts);
  }
  if (opts.footprint) {
    const { report: found } = await removeLeftovers(opts.footprint, opts);
    if (found.removed.length + found.gone.length + found.failed.length > 0) {
      log.warn(
        { removed: found.removed, failed: found.failed },
        "removed masq's leftovers found on the host (no record covered them; sysctls stay as found)",
      );
      report ??= { undone: [], gone: [], failed: [] };
      report.undone.push(...found.removed);
      report.gone.push(...found.gone);
      report.failed.push(...found.failed);
    }
  }
  if (report) log.info(report, "leftovers cleaned");
  return report;
}

/**
 * What cleanLeftovers would do, changing nothing (`masq cleanup --dry-run`): the recorded undo
 * commands, then the leftovers found on the host that the record does not cover.
 */
export async function planCleanup(
  stateFile: string,
  opts: CleanupOptions = {},
): Promise<{ recorded: string[][]; found: HostStep[]; corrupt: boolean }> {
  let state: HostState | undefined;
  let corrupt = false;
  try {
    state = readState(stateFile);
  } catch (err) {
    if (!(err instanceof StateFileError)) throw err;
    corrupt = true;
  }
  if (state) assertNotOwnedByLiveMasq(state, stateFile);
  const recorded = (state?.steps ?? [])
    .map((s) => s.undo)
    .filter((u) => u.length > 0)
    .reverse();
  const covered = new Set(recorded.map((u) => u.join(" ")));
  const found = opts.footprint
    ? (await removeLeftovers(opts.footprint, { ...opts, dryRun: true })).steps.filter(
        (s) => !covered.has(s.apply.join(" ")),
      )
    : [];
  return { recorded, found, corrupt };
}

function assertNotOwnedByLiveMasq(state: HostState, stateFile: string): void {
  if (state.pid !== process.pid && isLiveMasq(state.pid, state.pidStart))
    throw new Error(
      `another masq (pid ${state.pid}) is running with the host setup recorded in ${stateFile}; stop it first`,
    );
}

/** readState, except that a corrupt file is renamed out of the way (and logged) instead of thrown. */
function readStateOrSetAside(stateFile: string, log: HostLogger): HostState | undefined {
  try {
    return readState(stateFile);
  } catch (err) {
    if (!(err instanceof StateFileError)) throw err;
    const aside = `${stateFile}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    renameSync(stateFile, aside);
    log.warn(
      { stateFile, keptAs: aside, error: err.message },
      "the host state file is corrupt: kept aside; masq's leftovers are looked for on the host instead",
    );
    return undefined;
  }
}

/** Read a state file; undefined if it does not exist; StateFileError if it is not one. */
export function readState(stateFile: string): HostState | undefined {
  let text: string;
  try {
    text = readFileSync(stateFile, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  let state: HostState;
  try {
    state = JSON.parse(text) as HostState;
  } catch (err) {
    throw new StateFileError(`state file ${stateFile} is not valid JSON`, { cause: err });
  }
  if (
    typeof state !== "object" ||
    state === null ||
    state.version !== STATE_VERSION ||
    !Array.isArray(state.steps) ||
    typeof state.pid !== "number" ||
    !state.steps.every((s) => Array.isArray(s?.undo) && s.undo.every((a) => typeof a === "string"))
  ) {
    throw new StateFileError(
      `state file ${stateFile} has an unknown format (version ${String((state as HostState | null)?.version)})`,
    );
  }
  return state;
}

// ---- internals ----

async function undoSteps(stateFile: string, state: HostState, opts: HostOptions): Promise<UndoReport> {
  const log = opts.log ?? silent;
  const report: UndoReport = { undone: [], gone: [], failed: [] };
  // Bounded: one pass over the recorded steps, newest first.
  while (state.steps.length > 0) {
    const step = state.steps[state.steps.length - 1];
    if (step.undo.length > 0) {
      const r = await exec(step.undo, cmdOpts(opts));
      if (r.code === 0) report.undone.push(step.what);
      else if (isAlreadyGone(r.stderr)) report.gone.push(step.what);
      else {
        const error = new CommandError(step.undo, r).message;
        report.failed.push({ what: step.what, error });
        log.warn({ step: step.what, error }, "host undo failed");
      }
    }
    state.steps.pop();
    // Keep the record accurate during undo too: a crash here must not undo a step twice.
    writeState(stateFile, state);
  }
  return report;
}

async function readPrior(prior: Prior, opts: HostOptions): Promise<string> {
  if (prior.kind === "sysctl") {
    return (await run(["sysctl", "-n", prior.key], cmdOpts(opts))).trim();
  }
  const out = await run(["ip", "-j", "link", "show", "dev", prior.dev], cmdOpts(opts));
  const link = (JSON.parse(out) as Array<{ mtu?: number; flags?: string[] }>)[0];
  if (prior.kind === "link-state") return link?.flags?.includes("UP") ? "up" : "down";
  if (link?.mtu === undefined) throw new Error(`cannot read the MTU of ${prior.dev}`);
  return String(link.mtu);
}

function cmdOpts(opts: HostOptions): ExecOptions {
  return { ...(opts.netns ? { netns: opts.netns } : {}), timeoutMs: opts.timeoutMs ?? 10_000 };
}

function writeState(stateFile: string, state: HostState): void {
  const tmp = `${stateFile}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, stateFile);
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
