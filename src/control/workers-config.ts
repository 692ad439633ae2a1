// `workers` (`--workers`): how many packet loops `masq run` starts, each a worker thread on its
// own queue of multi-queue TUNs (src/datapath/worker-pool.ts). With more than one, the parts of
// masq that still drive one engine from the main thread are refused by name, each with "not yet
// with several workers", rather than run against one shard of the table.
import { availableParallelism } from "node:os";
import type { RunConfig } from "./config.ts";

/** More workers than this is a typo, not a machine (each opens a queue of both TUNs). */
export const MAX_WORKERS = 64;

/** `workers`: 1 to MAX_WORKERS, or "auto" (one per CPU this process may use). */
export function parseWorkers(value: string | number, cpus = availableParallelism()): number | string {
  if (value === "auto") return Math.max(1, Math.min(MAX_WORKERS, cpus));
  const n = typeof value === "number" ? value : /^\d{1,3}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS)
    return `${JSON.stringify(value)} must be "auto" or a whole number of workers from 1 to ${MAX_WORKERS}`;
  return n;
}

/** The first setting that cannot run with several workers yet, with the key that names it. */
export function workersConflict(c: RunConfig): { key: string; problem: string } | undefined {
  if (c.workers <= 1) return undefined;
  const not = (key: string, what: string) => ({
    key,
    problem: `${what}: not yet with several workers (workers = ${c.workers}); use workers = 1 for it`,
  });
  // Deterministic NAT gives each host ports by formula, not from its worker's slice.
  if (c.cgnat.deterministicInside !== undefined) return not("cgnat.mode", "deterministic NAT");
  if (typeof c.datapathCpu === "number")
    return not("datapath_cpu", "one CPU for the packet loop (the workers take one CPU each)");
  return undefined;
}
