// TFTP (RFC 1350): the client sends RRQ/WRQ to port 69 and the server answers from a new port
// (its transfer identifier), which address-and-port-dependent filtering would refuse. Expect one
// flow from the server's address to the client's mapping, whatever port it comes from.
import * as C from "../nat/counters.ts";
import type { AlgContext, UdpAlg } from "./types.ts";

export const TFTP_RRQ = 1;
export const TFTP_WRQ = 2;

/** RRQ/WRQ opcode of a request `filename\0mode\0` (1 or 2), 0 for other opcodes, -1 if malformed. */
export function tftpRequest(buf: Uint8Array, s: number, e: number): number {
  if (e - s < 2) return -1;
  const op = (buf[s] << 8) | buf[s + 1];
  if (op !== TFTP_RRQ && op !== TFTP_WRQ) return op >= 3 && op <= 6 ? 0 : -1;
  // Two NUL-terminated strings, the first (file name) non-empty.
  let nuls = 0;
  let first = -1;
  for (let i = s + 2; i < e && nuls < 2; i++)
    if (buf[i] === 0) {
      if (nuls === 0) first = i;
      nuls++;
    }
  if (nuls < 2 || first === s + 2) return -1;
  return op;
}

export const tftpAlg: UdpAlg<"tftp"> = {
  name: "tftp",
  transport: "udp",
  defaultPorts: [69],
  // The server answers from a new port of its own address.
  expectation: { transport: "udp", from: "remote" },
  counters: ["expectations", "expectations_refused", "malformed", "errors"],
  datagram(ctx: AlgContext, buf, s, e, outbound) {
    if (!outbound) return;
    const op = tftpRequest(buf, s, e);
    if (op < 0) {
      ctx.count(C.C_ALG_MALFORMED);
      return;
    }
    if (op === 0) return;
    ctx.expect("udp", ctx.inPort, ctx.remAddr);
  },
};
