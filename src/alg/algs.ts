// The application-level gateways masq ships. A new one is its file (a descriptor, src/alg/types.ts)
// and one line here: its config section, default ports and counters follow from the descriptor.
import { ftpAlg } from "./ftp.ts";
import { ircAlg } from "./irc.ts";
import { pptpAlg } from "./pptp.ts";
import { rtspAlg } from "./rtsp.ts";
import { tftpAlg } from "./tftp.ts";

export const ALGS = [ftpAlg, tftpAlg, ircAlg, rtspAlg, pptpAlg] as const;

/** The names of the shipped ALGs: the keys of `[alg.<name>]`. */
export type AlgName = (typeof ALGS)[number]["name"];
