// RTSP (RFC 2326, RealAudio's successor): the client names its RTP/RTCP ports in the SETUP
// request's Transport header (client_port=5000-5001) and the server sends the media there by UDP.
// From an inside client, rewrite the ports to a pinned outside pair and expect the server's
// streams; in the server's reply, map the echoed client_port back to the inside ports.
import * as C from "../nat/counters.ts";
import { type AlgContext, portNumber, startsWithCI, TCP_REWRITER_EVENTS, type TcpLineAlg } from "./types.ts";

const TRANSPORT = /^(transport[ \t]*:)(.*)$/is;
const CLIENT_PORT = /(client_port=)(\d+)(?:-(\d+))?/gi;

export function rewriteRtspLine(ctx: AlgContext, line: string, outbound: boolean): string | null {
  const t = TRANSPORT.exec(line);
  if (!t) return null;
  let malformed = false;
  let changed = false;
  const value = t[2].replace(CLIENT_PORT, (all: string, key: string, a: string, b?: string) => {
    const p1 = portNumber(a);
    const p2 = b === undefined ? -1 : portNumber(b);
    if (p1 < 0 || (b !== undefined && p2 < 0)) {
      malformed = true;
      return all;
    }
    if (!outbound) {
      const i1 = ctx.expectedInPort("udp", p1);
      if (i1 < 0) return all;
      const i2 = p2 < 0 ? -1 : ctx.expectedInPort("udp", p2);
      changed = true;
      return `${key}${i1}${p2 < 0 ? "" : `-${i2 < 0 ? p2 : i2}`}`;
    }
    const x1 = ctx.expect("udp", p1, ctx.remAddr);
    if (!x1) return all;
    let out = `${key}${x1.outPort}`;
    if (p2 >= 0) {
      // RTCP is expected on the next port up: ask for exactly that outside port.
      const x2 =
        p2 === p1 + 1
          ? ctx.expect("udp", p2, ctx.remAddr, x1.outPort + 1)
          : ctx.expect("udp", p2, ctx.remAddr);
      out += `-${x2 ? x2.outPort : x1.outPort + 1}`;
    }
    changed = true;
    return out;
  });
  if (malformed) ctx.count(C.C_ALG_MALFORMED);
  if (!changed) return null;
  ctx.count(C.C_ALG_REWRITES);
  return t[1] + value;
}

export const rtspAlg: TcpLineAlg<"rtsp"> = {
  name: "rtsp",
  transport: "tcp",
  defaultPorts: [554],
  // The media (RTP and RTCP) comes by UDP from the server the SETUP went to.
  expectation: { transport: "udp", from: "remote" },
  counters: TCP_REWRITER_EVENTS,
  interesting(buf, s, e) {
    return startsWithCI(buf, s, e, "transport");
  },
  line: rewriteRtspLine,
};
