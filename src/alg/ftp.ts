// FTP (RFC 959, RFC 2428): the control connection carries data-connection endpoints as text.
// - An inside client's PORT h1,h2,h3,h4,p1,p2 / EPRT |1|addr|port| names its own address and a
//   port it listens on: rewrite them to the outside address and a pinned outside port, and expect
//   the server's data connection (active mode).
// - An inside server (reached through a forward) answers PASV with 227 (h1,...,p2) and EPSV with
//   229 (|||port|): rewrite them the same way and expect the client's data connection.
// Passive mode for inside clients needs no rewriting: the data connection is an ordinary outbound
// flow, and paired pooling (RFC 4787 REQ-2) gives it the control connection's outside address,
// which servers check (vsftpd pasv_promiscuous=NO, pyftpdlib permit_foreign_addresses=False).

import * as C from "../nat/counters.ts";
import { formatIpv4 } from "../packet/addr.ts";
import {
  type AlgContext,
  octet,
  parseDotted,
  portNumber,
  startsWithCI,
  TCP_REWRITER_EVENTS,
  type TcpLineAlg,
} from "./types.ts";

const PORT_ARGS = /^(port)([ \t]+)(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)([ \t]*\r?\n)$/i;
const EPRT_ARGS = /^(eprt)([ \t]+)(.*?)(\r?\n)$/i;
const PASV_REPLY = /^(227[ -].*?)(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)(.*\r?\n)$/s;
const EPSV_REPLY = /^(229[ -].*?\()(.)\2\2(\d+)\2(\).*\r?\n)$/s;

function commaForm(addr: number, port: number): string {
  return `${addr >>> 24},${(addr >>> 16) & 255},${(addr >>> 8) & 255},${addr & 255},${port >>> 8},${port & 255}`;
}

/** Address and port of six comma-separated octets, or null when one is out of range. */
function sixOctets(parts: string[]): { addr: number; port: number } | null {
  const o = parts.map(octet);
  if (o.some((x) => x < 0)) return null;
  const port = o[4] * 256 + o[5];
  if (port === 0) return null;
  return { addr: ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0, port };
}

/** Counts a line that looks like a command but does not parse; it passes unchanged. */
function malformed(ctx: AlgContext): null {
  ctx.count(C.C_ALG_MALFORMED);
  return null;
}

/**
 * Expects the data connection the line announces for inside endpoint addr:port and returns the
 * outside endpoint to announce instead; null (counted) when the address is not the inside host's
 * own (a third-party address is never opened) or no expectation can be made.
 */
function expectData(
  ctx: AlgContext,
  addr: number,
  port: number,
): { outAddr: number; outPort: number } | null {
  if (addr !== ctx.inAddr) {
    ctx.count(C.C_ALG_FOREIGN_ADDRESS);
    return null;
  }
  const x = ctx.expect("tcp", port, ctx.remAddr);
  if (!x) return null;
  ctx.count(C.C_ALG_REWRITES);
  return x;
}

export function rewriteFtpLine(ctx: AlgContext, line: string, outbound: boolean): string | null {
  if (!outbound) return null;
  const c0 = line.charCodeAt(0) | 0x20;
  if (c0 === 0x70 /* p */) {
    const m = PORT_ARGS.exec(line);
    const ep = m ? sixOctets(m.slice(3, 9)) : null;
    if (!m || !ep) return malformed(ctx);
    const x = expectData(ctx, ep.addr, ep.port);
    if (!x) return null;
    return `${m[1]}${m[2]}${commaForm(x.outAddr, x.outPort)}${m[9]}`;
  }
  if (c0 === 0x65 /* e */) {
    const m = EPRT_ARGS.exec(line);
    if (!m) return malformed(ctx);
    // <d><af><d><addr><d><port><d>, the delimiter any printable ASCII character (RFC 2428 §2).
    const args = m[3].trimEnd();
    const d = args.charAt(0);
    const f = args.split(d);
    const dc = d.charCodeAt(0);
    if (args.length < 7 || dc < 33 || dc > 126 || f.length !== 5 || f[0] !== "" || f[4] !== "")
      return malformed(ctx);
    if (f[1] !== "1") return null; // IPv6 (af 2): not ours to translate
    const addr = parseDotted(f[2]);
    const port = portNumber(f[3]);
    if (addr < 0 || port < 0) return malformed(ctx);
    const x = expectData(ctx, addr, port);
    if (!x) return null;
    return `${m[1]}${m[2]}${d}1${d}${formatIpv4(x.outAddr)}${d}${x.outPort}${d}${m[4]}`;
  }
  if (line.startsWith("227")) {
    const m = PASV_REPLY.exec(line);
    const ep = m ? sixOctets(m.slice(2, 8)) : null;
    if (!m || !ep) return malformed(ctx);
    const x = expectData(ctx, ep.addr, ep.port);
    if (!x) return null;
    return `${m[1]}${commaForm(x.outAddr, x.outPort)}${m[8]}`;
  }
  if (line.startsWith("229")) {
    const m = EPSV_REPLY.exec(line);
    const port = m ? portNumber(m[3]) : -1;
    if (!m || port < 0) {
      ctx.count(C.C_ALG_MALFORMED);
      return null;
    }
    const x = ctx.expect("tcp", port, ctx.remAddr);
    if (!x) return null;
    if (x.outPort === port) return null;
    ctx.count(C.C_ALG_REWRITES);
    return `${m[1]}${m[2]}${m[2]}${m[2]}${x.outPort}${m[2]}${m[4]}`;
  }
  return null;
}

export const ftpAlg: TcpLineAlg<"ftp"> = {
  name: "ftp",
  transport: "tcp",
  defaultPorts: [21],
  // The data connection comes from the server (active mode) or the client (an inside server's
  // PASV), the control connection's remote either way.
  expectation: { transport: "tcp", from: "remote" },
  counters: [...TCP_REWRITER_EVENTS, "foreign_address"],
  interesting(buf, s, e, outbound) {
    if (!outbound) return false;
    return (
      startsWithCI(buf, s, e, "port ") ||
      startsWithCI(buf, s, e, "eprt ") ||
      startsWithCI(buf, s, e, "227") ||
      startsWithCI(buf, s, e, "229")
    );
  },
  line: rewriteFtpLine,
};
