// Shared set-up for the ALG unit tests: an engine with the ALGs attached, and a packet runner.
import { AlgRegistry } from "../../src/alg/registry.ts";
import { defaultEngineConfig, type EngineConfig } from "../../src/nat/config.ts";
import { NatEngine, REPLY } from "../../src/nat/engine.ts";
import { ip } from "../helpers/packets.ts";

export function algEngine(over: Partial<EngineConfig> = {}, publicAddr = "198.51.100.2"): NatEngine {
  const e = new NatEngine(
    defaultEngineConfig({
      inside: [{ addr: ip("192.168.0.0"), len: 24 }],
      outside: [ip(publicAddr)],
      maxFlows: 1024,
      filtering: "address-port-dependent",
      ...over,
    }),
  );
  e.attachAlg(new AlgRegistry(e, e.config.alg));
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
