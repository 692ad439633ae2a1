// `masq whois <outside address>:<port> [--at <time>]` (GET /v1/whois): which inside host held an
// outside port, for the abuse desk (RFC 6888 §4, RFC 7422 §1). With port blocks (`[cgnat]
// port_block`) the answer comes from the engine's block table (src/nat/port-blocks.ts): the
// block held now, or with `at` the one held then, from the blocks given since (still held) and
// the last BLOCK_HISTORY blocks freed per protocol. Without port blocks masq keeps no per-mapping
// index: the NAT event log (`[nat_log]`) is where the answer is. In deterministic mode the
// answer is the inverse of the configuration's function (src/nat/deterministic.ts), at any time;
// with several gateways sharing the pool (`[cgnat] nodes`) it is the whole pool's function
// (src/nat/deterministic-pool.ts), so every node answers for every node's addresses.
import { performance } from "node:perf_hooks";
import type { DeterministicPool } from "../nat/deterministic-pool.ts";
import type { NatEngine } from "../nat/engine.ts";
import { flowProtocolName } from "../nat/view.ts";
import { formatIpv4, parseIpv4 } from "../packet/addr.ts";
import { ControlError } from "./errors.ts";

export interface WhoisHolder {
  protocol: string;
  inside: string;
  block: { first: number; last: number; outside: string };
  /** Wall time (ISO) the block was given; `until` when it was freed (absent: held now). */
  since?: string;
  /** Deterministic mode: the range is the address's by the configuration, at every time. */
  deterministic?: true;
  /** Scale-out (`[cgnat] nodes`): the gateway whose part of the pool holds the address. */
  node?: number;
  until?: string;
}

export interface WhoisReply {
  outside: string;
  port: number;
  at?: string;
  /** Whether port blocks are on (without them there is nothing to look in). */
  portBlocks: boolean;
  /** Scale-out: how many gateways share the pool, and which one answered. */
  nodes?: number;
  node?: number;
  holders: WhoisHolder[];
}

/** "A.B.C.D:PORT" as address and port; a message when it is not one. */
export function parseOutsideEndpoint(text: string): { address: number; port: number } | string {
  const i = text.lastIndexOf(":");
  const address = i > 0 ? parseIpv4(text.slice(0, i)) : undefined;
  const port = i > 0 ? Number(text.slice(i + 1)) : Number.NaN;
  if (address === undefined || !Number.isInteger(port) || port < 0 || port > 65535)
    return `${JSON.stringify(text)} must be "address:port", e.g. 198.51.100.7:40211`;
  return { address, port };
}

/** A time for --at: ISO 8601 (e.g. 2026-12-02T14:03:00Z) or ms since the epoch; NaN when neither. */
export function parseWhoisTime(text: string): number {
  if (/^\d+$/.test(text)) return Number(text);
  return Date.parse(text);
}

/**
 * The handler of GET /v1/whois?address=A.B.C.D&port=P[&at=ms since the epoch]; `pool` (with
 * `node`, this gateway) when several gateways share the pool.
 */
export function whoisAnswer(
  engine: Pick<NatEngine, "whois" | "portBlocksOn">,
  q: URLSearchParams,
  scaleOut?: { pool: DeterministicPool; node: number },
): WhoisReply {
  const parsed = parseOutsideEndpoint(`${q.get("address") ?? ""}:${q.get("port") ?? ""}`);
  if (typeof parsed === "string") throw new ControlError("MASQ_ERR_BAD_REQUEST", parsed);
  const atText = q.get("at");
  const atWall = atText === null ? undefined : Number(atText);
  if (atWall !== undefined && !Number.isFinite(atWall))
    throw new ControlError("MASQ_ERR_BAD_REQUEST", "at must be ms since the epoch");
  if (scaleOut !== undefined) {
    // The configuration's function, for every protocol and time: no engine state is needed.
    const h = scaleOut.pool.whois(parsed.address, parsed.port);
    const outside = formatIpv4(parsed.address);
    return {
      outside,
      port: parsed.port,
      ...(atWall !== undefined ? { at: new Date(atWall).toISOString() } : {}),
      portBlocks: true,
      nodes: scaleOut.pool.nodes,
      node: scaleOut.node,
      holders:
        h === undefined
          ? []
          : [
              {
                protocol: "any",
                inside: formatIpv4(h.inAddr),
                block: { first: h.first, last: h.last, outside },
                deterministic: true,
                node: h.node,
              },
            ],
    };
  }
  // The engine's clock is performance.now() (as the NAT log's records, src/natlog/start.ts).
  const toWall = (ms: number) => new Date(performance.timeOrigin + ms).toISOString();
  const found = engine.whois(
    parsed.address,
    parsed.port,
    atWall === undefined ? undefined : atWall - performance.timeOrigin,
  );
  const outside = formatIpv4(parsed.address);
  return {
    outside,
    port: parsed.port,
    ...(atWall !== undefined ? { at: new Date(atWall).toISOString() } : {}),
    portBlocks: engine.portBlocksOn,
    holders: found.map((h) => ({
      protocol: h.proto === 0 ? "any" : flowProtocolName(h.proto),
      inside: formatIpv4(h.inAddr),
      block: { first: h.first, last: h.last, outside },
      ...(h.sinceMs >= 0 ? { since: toWall(h.sinceMs) } : { deterministic: true }),
      ...(h.untilMs >= 0 ? { until: toWall(h.untilMs) } : {}),
    })),
  };
}

/** `masq whois`'s text: one line per protocol whose block holds the port. */
export function formatWhois(r: WhoisReply): string {
  const what = `${r.outside}:${r.port}${r.at ? ` at ${r.at}` : ""}`;
  if (!r.portBlocks)
    return `${what}: port blocks are off ([cgnat] port_block); look in the NAT event log ([nat_log])\n`;
  if (r.holders.length === 0) return `${what}: no inside host held it\n`;
  return r.holders
    .map(
      (h) =>
        `${what} ${h.protocol}: ${h.inside} (block ${h.block.first}-${h.block.last}, ${h.deterministic ? `deterministic${h.node !== undefined ? `, through gateway node ${h.node}` : ""}` : `since ${h.since}${h.until ? `, until ${h.until}` : ", held now"}`})\n`,
    )
    .join("");
}
