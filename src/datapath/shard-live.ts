// A reload's live settings on every engine shard (several workers): the engine's policy for new
// flows (firewall rules, filtering, timeouts, limits, rates, port parity, MSS clamp) and the ALGs'
// ports and switches, as one `setLive` operation per worker. The gateway-wide caps of the policy
// are shared out as at start (shardPolicy); the per-host limits stay whole (a host lives on one
// worker). All or nothing as far as it goes across threads: the rule set is built here first (a
// rule that cannot be compiled fails before any worker is asked), and when a worker does not take
// the settings, the workers that did go back to the ones they had.
import type { AlgRegistry } from "../alg/registry.ts";
import type { LiveSettings } from "../control/reload.ts";
import { MasqError } from "../errors/masq-error.ts";
import type { NatEngine } from "../nat/engine.ts";
import { RuleSet } from "../policy/rules.ts";
import type { ShardClient, ShardHandlers } from "./shard-channel.ts";
import { shardPolicy } from "./worker-pool.ts";

/** The operation's name, shared by both ends. */
export const SET_LIVE_OP = "setLive";

/** A worker's end: its engine and its ALG registry take the settings (already its share). */
export function liveShardOps(engine: NatEngine, algs: AlgRegistry): ShardHandlers {
  return {
    [SET_LIVE_OP]: (s: LiveSettings) => {
      engine.setPolicy(s.policy);
      algs.reconfigure(s.alg);
      return true;
    },
  };
}

/** The main thread's end: what every shard runs with now, and the change of it. */
export class ShardedLive {
  /** `current`: the settings the workers were started with. */
  constructor(
    private readonly client: ShardClient,
    private current: LiveSettings,
  ) {}

  /** Every shard takes `next` (its share of it), or none keeps it; throws what failed. */
  apply(next: LiveSettings): void {
    new RuleSet(next.policy.firewall);
    const done: number[] = [];
    try {
      for (let w = 0; w < this.client.workers; w++) {
        this.client.callSync(w, SET_LIVE_OP, this.share(next));
        done.push(w);
      }
    } catch (err) {
      const back = done.filter((w) => {
        try {
          return this.client.callSync(w, SET_LIVE_OP, this.share(this.current)) === true;
        } catch {
          return false;
        }
      });
      const stuck = done.filter((w) => !back.includes(w));
      throw new MasqError(
        "MASQ_ERR_INTERNAL",
        `reload: worker ${done.length} did not take the new settings (${(err as Error).message}); ${
          stuck.length === 0
            ? "nothing changed"
            : `worker(s) ${stuck.join(", ")} could not go back and run the new settings`
        }`,
      );
    }
    this.current = next;
  }

  private share(s: LiveSettings): LiveSettings {
    return { policy: shardPolicy(s.policy, this.client.workers), alg: s.alg };
  }
}
