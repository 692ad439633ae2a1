// Shared set-up for the engine's unit tests: an engine on 192.168.0.0/24 behind 198.51.100.2.
import { defaultEngineConfig, type EngineConfig } from "../../src/nat/config.ts";
import { NatEngine } from "../../src/nat/engine.ts";
import { ip } from "../helpers/packets.ts";

export const P = "198.51.100.2";
export const REMOTE = "203.0.113.10";

/**
 * The hash tables' seed in unit tests. The default (0) draws a random one per table, so each run
 * would lay the tables out differently and a layout-dependent fault would come and go; fixed, a
 * failure replays. The fuzz tests draw the seed as part of their input instead.
 */
export const TEST_HASH_SEED = 0x5eed_1234;

export function makeEngine(over: Partial<EngineConfig> = {}): NatEngine {
  return new NatEngine(
    defaultEngineConfig({
      inside: [{ addr: ip("192.168.0.0"), len: 24 }],
      outside: [ip(P)],
      maxFlows: 1024,
      hashSeed: TEST_HASH_SEED,
      ...over,
    }),
  );
}

/** Runs one packet through the engine at a non-zero offset of a larger buffer (as the TUN batch does). */
export function run(e: NatEngine, pkt: Uint8Array, nowMs = 1000): { verdict: number; out: Uint8Array } {
  const buf = new Uint8Array(pkt.length + 64);
  buf.set(pkt, 37);
  const verdict = e.process(buf, 37, pkt.length, nowMs);
  const out = verdict === 2 ? e.replyBuf.slice(0, e.outLen) : buf.slice(37, 37 + e.outLen);
  return { verdict, out };
}
