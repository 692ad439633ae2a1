// Parameters for fast-check properties, so every randomized test is reproducible from one seed.
//
// `npm test` runs each property with a fixed seed (CI must never fail at random); FC_SEED=<n>
// replays one seed and FC_RUNS_FACTOR=<k> multiplies the runs (`npm run fuzz` explores fresh
// seeds that way). A failure names the seed and the command that replays it.
import fc from "fast-check";

/** The seed a property runs with when FC_SEED is not set: fixed, so `npm test` is deterministic. */
export const DEFAULT_SEED = 20261201;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name}=${JSON.stringify(v)} is not an integer`);
  return n;
}

/** The seed in force for this process. */
export function propertySeed(): number {
  return envInt("FC_SEED") ?? DEFAULT_SEED;
}

/**
 * fc.assert with the project's seed and run count. On failure the error names the seed and the
 * command that replays it; fast-check's own report (counterexample, path) follows.
 */
export function assertProperty<T>(property: fc.IRawProperty<T>, numRuns: number): void {
  const seed = propertySeed();
  const factor = envInt("FC_RUNS_FACTOR") ?? 1;
  try {
    fc.assert(property, { seed, numRuns: Math.max(1, Math.round(numRuns * factor)) });
  } catch (e) {
    const how = `FC_SEED=${seed}${factor !== 1 ? ` FC_RUNS_FACTOR=${factor}` : ""}`;
    throw new Error(`property failed with seed ${seed} (replay: ${how} npm run test:unit)\n${String(e)}`, {
      cause: e,
    });
  }
}
