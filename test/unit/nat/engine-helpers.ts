// Shared set-up for the engine's unit tests: an engine on 192.168.0.0/24 behind 198.51.100.2.
import { defaultEngineConfig, type EngineConfig } from "../../../src/nat/config.ts";
import { NatEngine } from "../../../src/nat/engine.ts";
import { ACK, ip, SYN, tcp, u16 } from "../../helpers/packets.ts";

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

/** Initial sequence numbers of the helpers' TCP connections: the client's and the server's. */
export const CLIENT_ISN = 1000;
export const SERVER_ISN = 90_000;

/**
 * Opens a TCP connection from `inside`:sport to `remote`:dport with the full three-way handshake
 * (SYN, SYN-ACK, the ACK of the SYN-ACK), so it is established; returns its outside port.
 */
export function openOutbound(
  e: NatEngine,
  inside: string,
  sport: number,
  remote: string,
  dport: number,
  nowMs = 1000,
): number {
  const syn = run(e, tcp({ src: inside, dst: remote, sport, dport, flags: SYN, seq: CLIENT_ISN }), nowMs);
  const port = u16(syn.out, 20);
  run(
    e,
    tcp({
      src: remote,
      dst: P,
      sport: dport,
      dport: port,
      flags: SYN | ACK,
      seq: SERVER_ISN,
      ack: CLIENT_ISN + 1,
    }),
    nowMs,
  );
  run(
    e,
    tcp({ src: inside, dst: remote, sport, dport, flags: ACK, seq: CLIENT_ISN + 1, ack: SERVER_ISN + 1 }),
    nowMs,
  );
  return port;
}
