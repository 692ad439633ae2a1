// The answer to an inside host whose new flow gets no mapping (RFC 6888 REQ-11): the packet is
// dropped (REQ-11 a) and the host told at once (REQ-11 b), so its application fails now instead of
// retrying into silence: ICMP destination unreachable, host unreachable (code 1), for UDP and
// ICMP; a TCP reset for a SYN, which every TCP takes as "connection refused" (some stacks treat an
// ICMP error in SYN-SENT as soft and keep retrying). Mappings in use are never removed to make
// room (REQ-11 d): before refusing, the caller only looks for a TCP mapping whose connections have
// all finished (src/nat/closed-mappings.ts).
//
// Answers are rate-limited, per host and for the gateway, so a host that floods new flows gets a
// bounded number of them (the limits mirror Linux's own ICMP limits: net.ipv4.icmp_msgs_per_sec
// 1000 with a burst of 50). No allocation: the buckets are typed-array slots.
import { IPPROTO_TCP } from "../packet/ipv4.ts";
import { ICMP_DEST_UNREACH } from "../packet/l4.ts";
import { hasToken, TokenBucket } from "../policy/rate.ts";
import { buildTcpReset } from "../policy/reject.ts";
import { type HostTable, NO_HOST } from "./host-table.ts";
import { buildIcmpError } from "./icmp.ts";

/** Destination unreachable code 1 (RFC 792). */
export const ICMP_CODE_HOST_UNREACH = 1;

/** Answers per second to one host, and the burst it may get at once. */
export const HOST_ANSWER_RATE = 10;
export const HOST_ANSWER_BURST = 20;
/** Answers per second from the whole gateway, and its burst (Linux's icmp_msgs_per_sec / _burst). */
export const GATEWAY_ANSWER_RATE = 1000;
export const GATEWAY_ANSWER_BURST = 50;

export class ExhaustionAnswers {
  private readonly hosts: HostTable;
  private readonly gateway = new TokenBucket(GATEWAY_ANSWER_RATE, GATEWAY_ANSWER_BURST);

  constructor(hosts: HostTable) {
    this.hosts = hosts;
  }

  /**
   * Builds in `out` the answer to the refused packet at b[off, off+len) (validated IPv4 from an
   * inside host; `host` its record or NO_HOST) and returns its length; 0 when none is due (rate
   * limit, or a destination no ICMP error may answer).
   */
  build(
    out: Uint8Array,
    b: Uint8Array,
    off: number,
    len: number,
    host: number,
    from: number,
    nowMs: number,
  ): number {
    // RFC 1122 3.2.2: no ICMP error about a datagram sent to a broadcast or multicast address.
    if (b[off + 16] >= 224) return 0;
    const ht = this.hosts;
    if (
      host !== NO_HOST &&
      !hasToken(ht.answerTokens, ht.answerStamps, host, nowMs, HOST_ANSWER_RATE, HOST_ANSWER_BURST)
    )
      return 0;
    if (!this.gateway.take(nowMs)) return 0;
    if (host !== NO_HOST) ht.answerTokens[host] -= 1;
    if (b[off + 9] === IPPROTO_TCP) return buildTcpReset(out, b, off, len);
    return buildIcmpError(out, b, off, len, from, ICMP_DEST_UNREACH, ICMP_CODE_HOST_UNREACH, 0);
  }
}
