// Shared set-up for the ALG unit tests: an engine with the ALGs attached, and a packet runner.
import { type AlgConfig, DEFAULT_ALG_CONFIG } from "../../../src/alg/config.ts";
import { AlgRegistry } from "../../../src/alg/registry.ts";
import { defaultEngineConfig, type EngineConfig } from "../../../src/nat/config.ts";
import { NatEngine, REPLY } from "../../../src/nat/engine.ts";
import { ACK, ip, PSH, tcp } from "../../helpers/packets.ts";
import { TEST_HASH_SEED } from "../nat/engine-helpers.ts";

/** `over.alg`: the `[alg]` configuration (default: every ALG on its standard ports). */
export function algEngine(
  over: Partial<EngineConfig> & { alg?: AlgConfig } = {},
  publicAddr = "198.51.100.2",
): NatEngine {
  const { alg = DEFAULT_ALG_CONFIG, ...engineOver } = over;
  const e = new NatEngine(
    defaultEngineConfig({
      inside: [{ addr: ip("192.168.0.0"), len: 24 }],
      outside: [ip(publicAddr)],
      maxFlows: 1024,
      filtering: "address-port-dependent",
      hashSeed: TEST_HASH_SEED,
      ...engineOver,
    }),
  );
  e.attachAlg(new AlgRegistry(e, alg));
  return e;
}

/** Runs a packet at an offset in a larger buffer; returns the verdict and the packet that goes out. */
export function go(e: NatEngine, pkt: Uint8Array, nowMs = 1000, partial = false) {
  const buf = new Uint8Array(pkt.length + 64);
  buf.set(pkt, 37);
  const verdict = e.process(buf, 37, pkt.length, nowMs, partial);
  const out = verdict === REPLY ? e.replyBuf.slice(0, e.outLen) : buf.slice(37, 37 + e.outLen);
  return { verdict, out };
}

/** The inside client and the server of the ALG tests' control connections. */
export const CLIENT = "192.168.0.2";
export const SERVER = "203.0.113.10";

/** A data segment of the client's (CLIENT:40000) stream to the server's `dport`, acknowledging 5000. */
export function fromClient(e: NatEngine, dport: number, seq: number, payload: string) {
  return go(
    e,
    tcp({
      src: CLIENT,
      dst: SERVER,
      sport: 40000,
      dport,
      flags: ACK | PSH,
      seq,
      ack: 5000,
      payload: Buffer.from(payload, "latin1"),
    }),
  );
}
