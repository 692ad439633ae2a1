// `masq reload` and SIGHUP: re-read the config file (with the flags masq was started with, which
// still win), and apply what changed, all or nothing. A file that does not validate, or that
// changes a setting only a restart can (reload-plan.ts), changes nothing; the forwards (the only
// step that can fail on the host: a port another mapping holds, an `ip rule` that fails) go first
// and are rolled back if one fails; then the engine's policy and the ALGs (one engine, or every
// shard of several workers, which undo it themselves when one shard fails: shard-live.ts; the
// forwards are put back then too), the port-mapping settings and the log level, which cannot fail
// once the configuration validated. Each goes through the code the start used: enginePolicyFor,
// the ALG registry's port tables, the forward registry.
import type { AnyAlgConfig } from "../alg/config.ts";
import type { AlgRegistry } from "../alg/registry.ts";
import { MasqError } from "../errors/masq-error.ts";
import type { NatEngine } from "../nat/engine.ts";
import type { LivePolicy } from "../nat/live-policy.ts";
import { type ForwardRegistry, type ForwardSpec, forwardText } from "../portmap/forwards.ts";
import type { RunConfig } from "./config.ts";
import { enginePolicyFor } from "./engine-config.ts";
import type { createLogger } from "./log.ts";
import { type KeyChange, planReload, RELOAD_KEYS, restartMessage, valueAt } from "./reload-plan.ts";

type Logger = ReturnType<typeof createLogger>;

/** What a reload did (or, with check, would do). */
export interface ReloadReport {
  /** "applied": changes made; "unchanged": the file says what runs; "checked": nothing applied. */
  result: "applied" | "unchanged" | "checked";
  /** The config file's keys that changed (or would). */
  changed: string[];
  /** The config's forwards added and removed (as `masq forward add` takes them). */
  forwards: { added: string[]; removed: string[] };
}

/** How reloads went since start: for `masq stats` and Prometheus. */
export interface ReloadStats {
  ok: number;
  refused: number;
  failed: number;
  /** The latest reload: when (ms since the epoch), how, and what it said. */
  last?: { atMs: number; result: "ok" | "refused" | "failed"; message: string };
}

export interface ReloadTargets {
  /** The configuration masq runs with; a reload writes what it applies into it. */
  running: RunConfig;
  /** Reads and validates the config file again, with the flags of the start. */
  resolve: () => RunConfig;
  /** Takes the engine's policy and the ALGs' settings: `engineLive` for one engine. */
  live: (s: LiveSettings) => void;
  /** Absent: this run has no forwards (several workers), and a file with one changes nothing. */
  forwards?: ForwardRegistry;
  log: Logger;
  setBusyPoll: (us: number) => void;
}

/** What a reload hands the engine(s): the policy for new flows and the ALGs' ports and switches. */
export interface LiveSettings {
  policy: LivePolicy;
  alg: AnyAlgConfig;
}

/** The live settings of a configuration (a copy: the running one is changed in place). */
export function liveSettingsFor(c: RunConfig): LiveSettings {
  return { policy: enginePolicyFor(c), alg: structuredClone(c.alg) };
}

/** One engine on this thread and its ALG registry take a reload's settings. */
export function engineLive(engine: NatEngine, algs: AlgRegistry): (s: LiveSettings) => void {
  return (s) => {
    engine.setPolicy(s.policy);
    algs.reconfigure(s.alg);
  };
}

/** A reload refused because a setting needs a restart (the message names each key). */
export class ReloadRefusedError extends MasqError {
  constructor(
    readonly keys: readonly KeyChange[],
    check = false,
  ) {
    super(
      "MASQ_ERR_RELOAD_NEEDS_RESTART",
      `${check ? "a reload would be refused" : "reload refused, nothing changed"}: ${restartMessage(keys)}`,
    );
    this.name = "ReloadRefusedError";
  }
}

export class Reloader {
  readonly stats: ReloadStats = { ok: 0, refused: 0, failed: 0 };
  /** Serializes reloads: SIGHUP and `masq reload` may come together. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly t: ReloadTargets) {}

  private closed = false;

  /** Reloads (or with `check`, only validates and reports); throws what refused it. */
  reload(check = false): Promise<ReloadReport> {
    if (this.closed)
      return Promise.reject(new MasqError("MASQ_ERR_NOT_RUNNING", "masq is stopping: no reload"));
    const run = this.queue.then(() => this.once(check));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** masq is stopping: waits for a reload in progress, refuses any later one. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
  }

  private async once(check: boolean): Promise<ReloadReport> {
    const { log } = this.t;
    let next: RunConfig;
    try {
      if (this.t.running.configFile === undefined)
        throw new MasqError(
          "MASQ_ERR_CONFIG_INVALID",
          "masq was started without --config: there is no file to reload",
        );
      next = this.t.resolve();
    } catch (err) {
      return this.fail(check, err, "failed");
    }
    const plan = planReload(this.t.running, next);
    if (plan.restart.length > 0)
      return this.fail(check, new ReloadRefusedError(plan.restart, check), "refused");
    const fw = forwardChanges(this.t.forwards, next.forwards);
    const changed = plan.live.map((c) => c.key).filter((k) => k !== "forward");
    if (fw.add.length > 0 || fw.remove.length > 0) changed.push("forward");
    const report: ReloadReport = {
      result: check ? "checked" : changed.length === 0 ? "unchanged" : "applied",
      changed,
      forwards: {
        added: fw.add.map(forwardLine),
        removed: fw.remove.map((id) => forwardLine(this.t.forwards!.list().find((f) => f.id === id)!.spec)),
      },
    };
    if (check) return report;
    let undoForwards: () => Promise<void>;
    try {
      undoForwards = await this.applyForwards(fw);
    } catch (err) {
      return this.fail(false, err, "failed");
    }
    try {
      // From the file: its live keys are what the running configuration takes below, and the
      // others are the same in both (a change to one was refused above).
      this.t.live(liveSettingsFor(next));
    } catch (err) {
      await undoForwards();
      return this.fail(false, err, "failed");
    }
    this.applySettings(next, plan.live);
    this.count("ok", changed.length === 0 ? "no change" : `changed ${changed.join(", ")}`);
    log.info(
      { changed, forwards: report.forwards },
      changed.length === 0 ? "config reloaded: no change" : `config reloaded: ${changed.join(", ")}`,
    );
    return report;
  }

  /** Counts (unless only checking), logs and throws the reason a reload changed nothing. */
  private fail(check: boolean, err: unknown, result: "refused" | "failed"): never {
    const message = err instanceof Error ? err.message : String(err);
    if (!check) {
      this.count(result, message);
      this.t.log.warn({ err: message }, `config reload ${result}: nothing changed`);
    }
    throw err;
  }

  private count(result: "ok" | "refused" | "failed", message: string): void {
    this.stats[result]++;
    this.stats.last = { atMs: Date.now(), result, message };
  }

  /**
   * Removes the config's forwards that are gone, adds the new; on a failure, undoes both. Returns
   * what undoes them (a later step that fails).
   */
  private async applyForwards(fw: ForwardChanges): Promise<() => Promise<void>> {
    const registry = this.t.forwards;
    if (registry === undefined) {
      if (fw.add.length > 0) throw new MasqError("MASQ_ERR_CONFIG_INVALID", "forward: not in this run");
      return async () => undefined;
    }
    const removed: ForwardSpec[] = [];
    const added: number[] = [];
    const undo = async () => {
      for (const id of added.reverse()) await registry.remove(id).catch(() => undefined);
      for (const spec of removed)
        await registry
          .add(spec, "config")
          .catch((e: unknown) =>
            this.t.log.error(
              { err: e, forward: forwardText(spec) },
              "reload: a forward could not be put back",
            ),
          );
    };
    try {
      for (const id of fw.remove) removed.push((await registry.remove(id)).spec);
      for (const spec of fw.add) added.push((await registry.add(spec, "config")).id);
    } catch (err) {
      await undo();
      throw err;
    }
    return undo;
  }

  /** The settings that cannot fail once validated: written into the running configuration, applied. */
  private applySettings(next: RunConfig, live: readonly KeyChange[]): void {
    const running = this.t.running;
    for (const change of live) {
      const k = RELOAD_KEYS.find((r) => r.key === change.key)!;
      // In place: the port-mapping servers and the ALG registry hold these very objects.
      setAt(running, k.path, valueAt(next, k.path));
    }
    this.t.log.level = running.log.level;
    this.t.setBusyPoll(running.busyPollUs);
  }
}

interface ForwardChanges {
  /** Ids of the config's forwards the file no longer has. */
  remove: number[];
  /** Forwards the file has that are not in force. */
  add: ForwardSpec[];
}

/** The config's forwards in force against the file's; runtime-added forwards are not touched. */
function forwardChanges(
  registry: ForwardRegistry | undefined,
  wanted: readonly ForwardSpec[],
): ForwardChanges {
  const same = (a: ForwardSpec, b: ForwardSpec) => forwardLine(a) === forwardLine(b);
  const inForce = (registry?.list() ?? []).filter((f) => f.source === "config");
  return {
    remove: inForce.filter((f) => !wanted.some((w) => same(w, f.spec))).map((f) => f.id),
    add: wanted.filter((w) => !inForce.some((f) => same(w, f.spec))),
  };
}

/** A forward as one line: "8080/tcp 192.168.0.2:80 remote 203.0.113.10 (web)". */
function forwardLine(s: ForwardSpec): string {
  const t = forwardText(s);
  return `${t.outside} ${t.inside}${t.remote ? ` remote ${t.remote}` : ""}${t.note ? ` (${t.note})` : ""}`;
}

function setAt(c: RunConfig, path: string, value: unknown): void {
  const parts = path.split(".");
  let o = c as unknown as Record<string, unknown>;
  for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[parts[parts.length - 1]] = value;
}
