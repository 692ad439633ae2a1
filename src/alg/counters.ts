// Each ALG's own counters: the shared ALG events (the engine's alg_* counters) it lists in its
// descriptor, counted for it alone as alg_<name>_<event> beside the engine's totals. One
// Float64Array, indexed by ALG and event (no strings when counting).
import * as C from "../nat/counters.ts";
import type { Alg, AlgEvent } from "./types.ts";

/** The engine's counter slot of each shared event. */
const EVENT_SLOTS: Record<AlgEvent, number> = {
  rewrites: C.C_ALG_REWRITES,
  expectations: C.C_ALG_EXPECTATIONS,
  expectations_refused: C.C_ALG_EXPECT_REFUSED,
  segments_resized: C.C_ALG_RESIZED,
  lines_held: C.C_ALG_LINES_HELD,
  malformed: C.C_ALG_MALFORMED,
  oversized: C.C_ALG_OVERSIZED,
  foreign_address: C.C_ALG_FOREIGN_ADDRESS,
  segments_cut: C.C_ALG_SEGMENTS_CUT,
  replayed: C.C_ALG_REPLAYED,
  errors: C.C_ALG_ERRORS,
};
const EVENTS = Object.keys(EVENT_SLOTS) as AlgEvent[];
/** Event index by engine slot (-1: not an ALG event). */
const EVENT_OF_SLOT = new Int8Array(C.COUNTER_SLOTS).fill(-1);
EVENTS.forEach((e, i) => {
  EVENT_OF_SLOT[EVENT_SLOTS[e]] = i;
});

export class AlgCounters {
  private readonly engine: Float64Array;
  private readonly algs: readonly Alg[];
  /** Per ALG (its index in algs) and event: the count, or NaN where the ALG does not list it. */
  private own: Float64Array;

  /** `algs`: the caller's list, which may grow (then call grow()). */
  constructor(engineCounters: Float64Array, algs: readonly Alg[]) {
    this.engine = engineCounters;
    this.algs = algs;
    this.own = new Float64Array(0);
    this.grow();
  }

  /** Makes room for ALGs added to the list since, keeping the counts of the others. */
  grow(): void {
    const old = this.own;
    this.own = new Float64Array(this.algs.length * EVENTS.length).fill(Number.NaN);
    this.own.set(old);
    this.algs.forEach((a, i) => {
      if (i * EVENTS.length < old.length) return;
      for (const e of a.counters) this.own[i * EVENTS.length + EVENTS.indexOf(e)] = 0;
    });
  }

  /** Counts engine slot `slot`, and for `alg` too when it is one of the events it lists. */
  count(alg: Alg | null, slot: number): void {
    this.engine[slot]++;
    const e = EVENT_OF_SLOT[slot];
    if (alg === null || e < 0) return;
    const i = this.algs.indexOf(alg);
    if (i >= 0) this.own[i * EVENTS.length + e]++; // NaN stays NaN: not one of its counters
  }

  /** alg_<name>_<event> for every ALG in force and every event it lists. */
  named(): Record<string, number> {
    const out: Record<string, number> = {};
    this.algs.forEach((a, i) => {
      for (const e of a.counters) out[`alg_${a.name}_${e}`] = this.own[i * EVENTS.length + EVENTS.indexOf(e)];
    });
    return out;
  }
}
