// IRC DCC (the CTCP "DCC" messages of mIRC/ircII clients): a client offering a file or a chat
// sends PRIVMSG <peer> :\x01DCC SEND <file> <addr> <port> [size]\x01 (CHAT: "chat" for the file),
// its address a 32-bit number in decimal. From an inside client, rewrite address and port to the
// outside ones and expect the peer's connection (from any address: the peer is another user, not
// the server). Resuming: the peer answers DCC RESUME <file> <port> <pos> with the port it was
// offered (our outside one) and the offering client confirms with DCC ACCEPT with its own port:
// RESUME coming in gets the inside port back, ACCEPT going out the outside port.
import * as C from "../nat/counters.ts";
import {
  type AlgContext,
  parseDotted,
  portNumber,
  startsWithCI,
  TCP_REWRITER_EVENTS,
  type TcpLineAlg,
} from "./types.ts";

// biome-ignore lint/suspicious/noControlCharactersInRegex: CTCP messages are delimited by \x01.
const CTCP_DCC = /\u0001DCC ([A-Za-z]+) ([^\u0001\r\n]*)\u0001/;
/** SEND/CHAT arguments: file (quoted or not), address, port, then optional size and token. */
const OFFER = /^("[^"]*"|\S+) (\d+|\d+\.\d+\.\d+\.\d+) (\d+)((?: \S+)*)$/;
/** RESUME/ACCEPT arguments: file, port, position (and an optional token). */
const RESUME = /^("[^"]*"|\S+) (\d+) (\d+)((?: \S+)*)$/;

function ircAddress(text: string): number {
  if (text.includes(".")) return parseDotted(text);
  if (!/^\d{1,10}$/.test(text)) return -1;
  const n = Number(text);
  return n <= 0xffffffff ? n : -1;
}

export function rewriteIrcLine(ctx: AlgContext, line: string, outbound: boolean): string | null {
  const m = CTCP_DCC.exec(line);
  if (!m) {
    if (line.includes("\x01DCC ")) ctx.count(C.C_ALG_MALFORMED);
    return null;
  }
  const type = m[1].toUpperCase();
  const args = m[2];
  const at = m.index + 5 + m[1].length + 1; // where the arguments begin in the line
  let replaced: string | null = null;
  if (outbound && (type === "SEND" || type === "CHAT")) {
    const a = OFFER.exec(args);
    if (!a) {
      ctx.count(C.C_ALG_MALFORMED);
      return null;
    }
    const addr = ircAddress(a[2]);
    const port = Number(a[3]);
    if (addr < 0 || port > 65535) {
      ctx.count(C.C_ALG_MALFORMED);
      return null;
    }
    if (addr !== ctx.inAddr) {
      ctx.count(C.C_ALG_FOREIGN_ADDRESS);
      return null;
    }
    if (port === 0) {
      // Passive (reverse) DCC: the peer listens and answers with its own address, port and the
      // token; the inside host then connects out like any client. Only the address is ours to
      // show: the public one, not the private one.
      replaced = `${a[1]} ${ctx.outAddr >>> 0} 0${a[4]}`;
    } else {
      const x = ctx.expect("tcp", port, 0);
      if (!x) return null;
      replaced = `${a[1]} ${x.outAddr >>> 0} ${x.outPort}${a[4]}`;
    }
  } else if (type === "RESUME" || type === "ACCEPT") {
    // Only the offering side's messages carry our ports: ACCEPT going out, RESUME coming in.
    if (outbound !== (type === "ACCEPT")) return null;
    const a = RESUME.exec(args);
    const port = a ? portNumber(a[2]) : -1;
    if (!a || port < 0) {
      ctx.count(C.C_ALG_MALFORMED);
      return null;
    }
    const other = outbound ? ctx.expectedOutPort("tcp", port) : ctx.expectedInPort("tcp", port);
    if (other < 0 || other === port) return null;
    replaced = `${a[1]} ${other} ${a[3]}${a[4]}`;
  } else return null;
  ctx.count(C.C_ALG_REWRITES);
  return line.slice(0, at) + replaced + line.slice(at + args.length);
}

export const ircAlg: TcpLineAlg<"irc"> = {
  name: "irc",
  transport: "tcp",
  defaultPorts: [6667],
  // The peer of a DCC offer is another user, at an address the server never names.
  expectation: { transport: "tcp", from: "any" },
  counters: [...TCP_REWRITER_EVENTS, "foreign_address"],
  interesting(buf, s, e) {
    // Lines are short and come whole or with their rest right behind: any partial line may be
    // a DCC offer, so hold it; complete lines are looked at only when they carry a CTCP DCC.
    for (let i = s; i + 4 < e; i++) if (buf[i] === 1 && startsWithCI(buf, i + 1, e, "dcc ")) return true;
    return buf[e - 1] !== 0x0a;
  },
  line: rewriteIrcLine,
};
