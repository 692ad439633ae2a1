// NAT-PMP (RFC 6886) requests answered: the external address and TCP/UDP mappings, granted as
// leases (leases.ts). The wire format is natpmp.ts; the routing by version is service.ts.

import { natpmpResultOf } from "../errors/codes.ts";
import { formatIpv4 } from "../packet/addr.ts";
import {
  errorResponse,
  externalAddressResponse,
  mapResponse,
  NatPmpResult,
  parseNatPmpRequest,
} from "./natpmp.ts";
import type { AnswerContext } from "./service.ts";

/** The answer to a NAT-PMP request from `src` (arrived on `device`); undefined: none. */
export function answerNatPmp(
  ctx: AnswerContext,
  msg: Uint8Array,
  src: number,
  device: string | undefined,
): Uint8Array | undefined {
  const req = parseNatPmpRequest(msg);
  if (req.kind === "ignore") {
    ctx.count("ignored");
    return undefined;
  }
  ctx.count("natpmp_requests");
  const epoch = ctx.epochSec();
  const result = (code: number) => {
    ctx.count(`natpmp_result_${NATPMP_RESULT_NAMES[code] ?? code}`);
    return code;
  };
  if (req.kind === "error") return errorResponse(req.opcode, result(req.result), epoch);
  const owner = ctx.requester(src, device);
  if (owner === null) return undefined;
  if (req.kind === "external-address") {
    if (owner === undefined) return externalAddressResponse(result(NatPmpResult.NOT_AUTHORIZED), epoch, 0);
    const addr = ctx.externalAddressFor(src);
    if (addr === 0) return externalAddressResponse(result(NatPmpResult.NETWORK_FAILURE), epoch, 0);
    return externalAddressResponse(result(NatPmpResult.SUCCESS), epoch, addr);
  }
  const { proto, internalPort, suggestedExternalPort, lifetime } = req;
  const reply = (code: number, ext: number, life: number) =>
    mapResponse(proto, result(code), epoch, internalPort, ext, life);
  if (owner === undefined) return reply(NatPmpResult.NOT_AUTHORIZED, 0, 0);
  if (lifetime === 0) {
    // §3.4: deletion; internal port 0 deletes all of this client's mappings of the protocol.
    const r = ctx.leases.unmap("natpmp", proto, src, internalPort, "");
    return r === "ok" ? reply(NatPmpResult.SUCCESS, 0, 0) : reply(NatPmpResult.NOT_AUTHORIZED, 0, 0);
  }
  if (internalPort === 0) return reply(NatPmpResult.NOT_AUTHORIZED, 0, 0);
  const out = ctx.leases.map({
    origin: "natpmp",
    owner,
    proto,
    inAddr: src,
    inPort: internalPort,
    suggestedPort: suggestedExternalPort,
    suggestedAddr: 0,
    lifetime,
    nonce: "",
    remoteAddr: 0,
    preferFailure: false,
  });
  if (out.ok) return reply(NatPmpResult.SUCCESS, out.grant.outPort, out.lifetime);
  ctx.log.debug({ src: formatIpv4(src), why: `${out.code}: ${out.detail}` }, "nat-pmp mapping refused");
  return reply(natpmpResultOf(out.code), 0, 0);
}

const NATPMP_RESULT_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(NatPmpResult).map(([k, v]) => [v, k.toLowerCase()]),
);
