// What the port-mapping protocols (NAT-PMP/PCP and UPnP IGD) ask of the engine: one NatEngine,
// or with several workers the main thread's view of their shards (sharded-engine.ts), which
// answers the same calls from the shard that owns the inside host.
import type { EngineConfig } from "../nat/config.ts";
import type { EngineStats } from "../nat/view.ts";
import type { PinEngine } from "./forwards.ts";

export interface PortMapEngine extends PinEngine {
  readonly config: Pick<EngineConfig, "mode" | "outside" | "inside" | "ports">;
  /** Interface mode without a public address now: nothing can be mapped. */
  readonly addressless: boolean;
  /** The engine clock in seconds, the base of a pin's deadline. */
  readonly clockSec: number;
  /** A pin by id (undefined: gone, or lapsed). */
  readonly pins: {
    get(
      id: number,
    ): { readonly expiresAtSec: number; readonly note: string; readonly origin: string } | undefined;
  };
  /** The outside address paired with an inside host (0: none now). */
  pairedAddress(inAddr: number): number;
  renewPin(id: number, expiresAtSec: number): boolean;
  stats(): EngineStats;
}
