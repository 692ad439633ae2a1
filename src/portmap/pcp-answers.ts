// PCP (RFC 6887) requests answered: ANNOUNCE, and MAP with the FILTER, PREFER_FAILURE and
// THIRD_PARTY options, granted as leases (leases.ts). The wire format is pcp.ts; the routing by
// version is service.ts.

import { pcpResultOf } from "../errors/codes.ts";
import { formatIpv4 } from "../packet/addr.ts";
import type { Proto } from "./leases.ts";
import {
  echoedMapOptions,
  OPCODE_MAP,
  PCP_RESULT_NAMES,
  type PcpMapRequest,
  PcpResult,
  parsePcpRequest,
  pcpAnnounceResponse,
  pcpErrorLifetime,
  pcpErrorResponse,
  pcpMapResponse,
} from "./pcp.ts";
import type { AnswerContext } from "./service.ts";

/** The answer to a PCP request from `src` (arrived on `device`); undefined: none. */
export function answerPcp(
  ctx: AnswerContext,
  msg: Uint8Array,
  src: number,
  device: string | undefined,
): Uint8Array | undefined {
  const req = parsePcpRequest(msg, src);
  if (req.kind === "ignore") {
    ctx.count("ignored");
    return undefined;
  }
  ctx.count("pcp_requests");
  const epochSec = ctx.epochSec();
  const fail = (opcode: number, code: number, why: string) => {
    ctx.count(`pcp_result_${PCP_RESULT_NAMES[code]?.toLowerCase() ?? code}`);
    ctx.log.debug({ src: formatIpv4(src), result: PCP_RESULT_NAMES[code], why }, "pcp request refused");
    return pcpErrorResponse(msg, opcode, { result: code, lifetime: pcpErrorLifetime(code), epochSec });
  };
  if (req.kind === "error") return fail(req.opcode, req.result, req.why);
  const owner = ctx.requester(src, device);
  if (owner === null) return undefined;
  if (owner === undefined)
    return fail(req.kind === "map" ? OPCODE_MAP : 0, PcpResult.NOT_AUTHORIZED, "not an inside host seen");
  if (req.kind === "announce") {
    ctx.count("pcp_result_success");
    return pcpAnnounceResponse({ result: PcpResult.SUCCESS, lifetime: 0, epochSec });
  }
  return answerMap(ctx, req, owner, epochSec, fail);
}

/** MAP (§11): deletion, or a mapping granted as a lease. */
function answerMap(
  ctx: AnswerContext,
  req: PcpMapRequest,
  owner: string,
  epochSec: number,
  fail: (opcode: number, code: number, why: string) => Uint8Array,
): Uint8Array {
  let inAddr = req.clientAddr;
  if (req.thirdParty !== undefined) {
    // §13.1: without configuration, a host maps only its own address.
    if (!ctx.config.thirdParty) return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "THIRD_PARTY not allowed");
    if (!ctx.isInside(req.thirdParty))
      return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "THIRD_PARTY address not inside");
    inAddr = req.thirdParty;
  }
  const proto: Proto | undefined = req.protocol === 6 ? "tcp" : req.protocol === 17 ? "udp" : undefined;
  const nonce = hex(req.nonce);
  if (req.lifetime === 0) {
    // Deletion (§15). Protocol 0 means all protocols; internal port 0 all ports.
    if (proto === undefined && req.protocol !== 0)
      return fail(OPCODE_MAP, PcpResult.UNSUPP_PROTOCOL, `protocol ${req.protocol}`);
    let refused = false;
    for (const p of proto ? [proto] : (["tcp", "udp"] as const))
      if (ctx.leases.unmap("pcp", p, inAddr, req.protocol === 0 ? 0 : req.internalPort, nonce) !== "ok")
        refused = true;
    if (refused) return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "mapping belongs to another client");
    ctx.count("pcp_result_success");
    return pcpMapResponse({
      result: PcpResult.SUCCESS,
      lifetime: 0,
      epochSec,
      nonce: req.nonce,
      protocol: req.protocol,
      internalPort: req.internalPort,
      externalPort: req.suggestedExternalPort,
      externalAddr: req.suggestedExternalAddr,
    });
  }
  if (proto === undefined) return fail(OPCODE_MAP, PcpResult.UNSUPP_PROTOCOL, `protocol ${req.protocol}`);
  // "All ports" mappings are not given: one inside host must not own the whole outside address.
  if (req.internalPort === 0) return fail(OPCODE_MAP, PcpResult.NOT_AUTHORIZED, "all-ports mapping");
  if (req.filters.length > 1) return fail(OPCODE_MAP, PcpResult.EXCESSIVE_REMOTE_PEERS, "one FILTER at most");
  let remoteAddr = 0;
  const f = req.filters[0];
  if (f && f.prefixLength !== 0) {
    // A pin admits one remote address (or any): narrower filters are refused, not widened.
    if (f.prefixLength !== 128 || f.remotePort !== 0)
      return fail(OPCODE_MAP, PcpResult.UNSUPP_OPTION, "FILTER other than one whole address");
    remoteAddr = f.remoteAddr;
  }
  const out = ctx.leases.map({
    origin: "pcp",
    owner,
    proto,
    inAddr,
    inPort: req.internalPort,
    suggestedPort: req.suggestedExternalPort,
    suggestedAddr: req.suggestedExternalAddr,
    lifetime: req.lifetime,
    nonce,
    remoteAddr,
    preferFailure: req.preferFailure,
  });
  if (!out.ok) return fail(OPCODE_MAP, pcpResultOf(out.code), `${out.code}: ${out.detail}`);
  ctx.count("pcp_result_success");
  return pcpMapResponse({
    result: PcpResult.SUCCESS,
    lifetime: out.lifetime,
    epochSec,
    nonce: req.nonce,
    protocol: req.protocol,
    internalPort: req.internalPort,
    externalPort: out.grant.outPort,
    externalAddr: out.grant.outAddr,
    options: echoedMapOptions(req.preferFailure, f),
  });
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}
