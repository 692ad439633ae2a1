// The `[alg]` configuration, derived from the list of ALG descriptors (src/alg/algs.ts): one
// `{ enabled, ports }` entry per ALG, keyed by its name, beside the limits all ALGs share.
import { ALGS, type AlgName } from "./algs.ts";
import type { Alg } from "./types.ts";

/** One ALG's switch and the server ports whose flows it watches. */
export interface AlgPorts {
  enabled: boolean;
  ports: number[];
}

/** What all ALGs share: how long and how many expectations may wait. */
export type AlgLimits = {
  /** An expectation (the related flow a command announced) lapses after this long unused. */
  expectTimeoutSec: number;
  /** Expectations one flow may have outstanding at once. */
  maxExpectationsPerFlow: number;
  /** Expectations outstanding in total. */
  maxExpectations: number;
};

/** The configuration of the ALGs named N (the shipped ones unless a test brings its own). */
export type AlgConfigOf<N extends string> = AlgLimits & { [K in N]: AlgPorts };

export type AlgConfig = AlgConfigOf<AlgName>;

/** Any ALG configuration: read an ALG's entry with `algPorts`. */
export type AnyAlgConfig = AlgLimits & { [name: string]: unknown };

export const DEFAULT_ALG_LIMITS: AlgLimits = {
  expectTimeoutSec: 60,
  maxExpectationsPerFlow: 8,
  maxExpectations: 1024,
};

/** Defaults of the ALGs `algs`: each one as its descriptor says, fresh arrays (not shared). */
export function defaultAlgConfig<N extends string>(algs: readonly Alg<N>[]): AlgConfigOf<N> {
  const c: Record<string, unknown> = { ...DEFAULT_ALG_LIMITS };
  for (const a of algs) c[a.name] = { enabled: a.enabledByDefault ?? true, ports: [...a.defaultPorts] };
  return c as AlgConfigOf<N>;
}

export const DEFAULT_ALG_CONFIG: AlgConfig = defaultAlgConfig(ALGS);

/** The entry of ALG `name` (off when the configuration has none). */
export function algPorts(cfg: AnyAlgConfig, name: string): AlgPorts {
  const e = cfg[name] as AlgPorts | undefined;
  return e ?? { enabled: false, ports: [] };
}
