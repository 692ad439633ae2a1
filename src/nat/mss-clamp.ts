// MSS clamping: a SYN's MSS option lowered to what the link it leaves by can carry. Behind a WAN
// whose MTU is below the LAN's (PPPoE: 1492) on a path that filters ICMP fragmentation-needed,
// a server sending full-size segments to a 1500-MTU host never learns they do not fit, and the
// connection stalls after its handshake. Every gateway has the fix (iptables TCPMSS
// --clamp-mss-to-pmtu, OpenWrt mtu_fix): SYNs leaving by the outside interface get at most its
// MTU − 40, SYNs and SYN-ACKs leaving by the inside one at most the inside MTU − 40.
//
// The MTUs live here, and only here: the daemon reads them from the interfaces at start, and
// NatEngine.setMtus changes them later (a link event), so the packet path reads one place.
import { TCP_SYN } from "../packet/l4.ts";
import { clampMssOption } from "../packet/tcp-mss.ts";
import type { MssClampSetting } from "./config.ts";
import { C_MSS_CLAMPED } from "./counters.ts";

/** An IPv4 and a TCP header without options: MSS = MTU − 40 (RFC 9293 §3.7.1). */
const HEADERS = 40;

export class MssClamp {
  /** Largest MSS of a SYN leaving by the outside interface; 0: none (off). */
  outbound = 0;
  /** Largest MSS of a SYN or SYN-ACK leaving by an inside interface; 0: none (off). */
  inbound = 0;
  insideMtu = 0;
  outsideMtu = 0;

  constructor(
    public setting: MssClampSetting,
    private readonly counters: Float64Array,
    insideMtu: number,
    outsideMtu: number,
  ) {
    this.setMtus(insideMtu, outsideMtu);
  }

  /** Clamp as `setting` says from now on (a reload), to the links' MTUs as they are. */
  setSetting(setting: MssClampSetting): void {
    this.setting = setting;
    this.setMtus(this.insideMtu, this.outsideMtu);
  }

  /** The links' MTUs (the smallest of the inside interfaces'); the clamp follows them in "pmtu". */
  setMtus(insideMtu: number, outsideMtu: number): void {
    this.insideMtu = insideMtu;
    this.outsideMtu = outsideMtu;
    const s = this.setting;
    this.outbound = s === "off" ? 0 : s === "pmtu" ? Math.max(0, outsideMtu - HEADERS) : s;
    this.inbound = s === "off" ? 0 : s === "pmtu" ? Math.max(0, insideMtu - HEADERS) : s;
  }

  /**
   * Clamps the TCP segment at `l4` if it is a SYN (or SYN-ACK) leaving by the outside interface
   * (`outbound`) or an inside one. Allocates nothing; a malformed option list is left alone.
   */
  apply(b: Uint8Array, l4: number, outbound: boolean, partial: boolean): void {
    if ((b[l4 + 13] & TCP_SYN) === 0) return;
    const max = outbound ? this.outbound : this.inbound;
    if (max !== 0 && clampMssOption(b, l4, max, partial)) this.counters[C_MSS_CLAMPED]++;
  }
}
