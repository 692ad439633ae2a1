// IPv6 simple security (RFC 6092): a stateful filter for forwarded IPv6, no translation. What
// inside hosts send opens a flow (TCP, UDP, ICMPv6 echo); what comes from the outside passes only
// as a reply of a flow, as an ICMPv6 error that quotes one, or through a configured pinhole, and
// everything else is dropped and counted by reason. Neighbour discovery is link-local and never
// forwarded: the host plan does not steer it here (host/ipv6-rules.ts), so the gateway's stack
// keeps doing it; link-scope packets that reach the filter (the kernel's own chatter on the TUN)
// are dropped and counted, never written back.
//
// The table is fixed-capacity open addressing over typed arrays: a key is probed in at most
// MAX_PROBE slots, a slot whose flow expired is free again, and a new flow that finds no free slot
// in its window is dropped and counted (`tableFull`). Nothing here allocates per packet.
//
// Pinholes granted at run time (PCP MAP, src/ipv6fw/pcp6.ts) live in the same table, under a key
// of their own (the protocol marked with PINHOLE_MARK, no outside address or port), so an
// unsolicited packet costs one more lookup, not a scan; they lapse like flows, at their lifetime.
// The config's [[ipv6.pinhole]] entries are permanent and few: a small array, scanned.
import type { Filtering } from "../nat/config.ts";
import { DROP, FORWARD, SIDE_INSIDE, SIDE_OUTSIDE } from "../nat/verdicts.ts";

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

/**
 * Seconds; the minimums RFC 6092 sets, used as they are (its REC-n numbers are not cited here:
 * the text was not at hand when this was written; the values are the RFC's).
 */
export const IPV6_TIMEOUTS = {
  /** RFC 6092, UDP filters: outbound UDP filter state must not expire in less than two minutes. */
  udp: 120,
  /** RFC 6092, TCP filters: the established idle timeout is at least two hours four minutes. */
  tcpEstablished: 7440,
  /** RFC 6092, TCP filters: transitory states (opening, closing) at least four minutes. */
  tcpTransitory: 240,
  /** ICMPv6 echo: RFC 6092 sets no figure; 60 s, as RFC 5508 REQ-1 does for IPv4. */
  icmpEcho: 60,
} as const;

/** Drop reasons, in the order of `Ip6FilterStats.dropped`. */
export const IP6_DROP_REASONS = [
  "unsolicited_tcp",
  "unsolicited_udp",
  "unsolicited_icmp",
  "icmp_error_no_flow",
  "other_protocol",
  "fragment",
  "malformed",
  "table_full",
  "link_scope",
] as const;
export type Ip6DropReason = (typeof IP6_DROP_REASONS)[number];
const R_UNSOLICITED_TCP = 0;
const R_UNSOLICITED_UDP = 1;
const R_UNSOLICITED_ICMP = 2;
const R_ICMP_ERROR = 3;
const R_OTHER = 4;
const R_FRAGMENT = 5;
const R_MALFORMED = 6;
const R_TABLE_FULL = 7;
const R_LINK_SCOPE = 8;

export interface Ip6Pinhole {
  /** The inside host's address, 16 bytes. */
  address: Uint8Array;
  proto: typeof IPPROTO_TCP | typeof IPPROTO_UDP;
  port: number;
}

export interface Ip6FilterOptions {
  /** Flows held at most (rounded up to a power of two). */
  capacity: number;
  filtering: Filtering;
  pinholes?: readonly Ip6Pinhole[];
  /** Inside prefixes, for packets whose side the device does not tell (a single TUN). */
  insidePrefixes?: ReadonlyArray<{ addr: Uint8Array; len: number }>;
}

export interface Ip6FilterStats {
  passedOut: number;
  passedIn: number;
  flowsCreated: number;
  pinholeHits: number;
  icmpErrorsPassed: number;
  /** Per reason, as IP6_DROP_REASONS. */
  dropped: Float64Array;
}

const KEY_WORDS = 10;
/** Set in a pinhole key's protocol word: no flow key has it (flows hold 6, 17 or 58). */
const PINHOLE_MARK = 0x100;
const MAX_PROBE = 16;
const TCP_SYN = 0x02;
const TCP_FIN = 0x01;
const TCP_RST = 0x04;
const TCP_ACK = 0x10;
const ST_TCP_OPENING = 1;
const ST_TCP_ESTABLISHED = 2;
const ST_TCP_CLOSING = 3;
const ST_OTHER = 4;
const ST_PINHOLE = 5;

function word(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/**
 * Fields a snapshot (`masq stop --keep-state`, src/control/keep-state.ts) leaves out, as paths
 * under its root `ip6`: the configuration's (the new run builds them from its own) and scratch.
 * Kept: the table (keys, expiries, states) and the counters.
 */
export const IP6_FILTER_SNAPSHOT_SKIP = [
  "ip6.capacity",
  "ip6.mask",
  "ip6.k",
  "ip6.pk",
  "ip6.filtering",
  "ip6.pinholes",
  "ip6.pinholeCount",
  "ip6.prefixes",
] as const;

export class Ip6Filter {
  readonly capacity: number;
  private readonly mask: number;
  private readonly keys: Uint32Array;
  private readonly expires: Float64Array;
  private readonly states: Uint8Array;
  /** The key being looked up: inside address, outside address, proto, ports. */
  private readonly k = new Uint32Array(KEY_WORDS);
  /** The pinhole key of an inbound packet (inside address, proto | PINHOLE_MARK, port). */
  private readonly pk = new Uint32Array(KEY_WORDS);
  private readonly filtering: Filtering;
  private readonly pinholes: Uint32Array;
  private readonly pinholeCount: number;
  private readonly prefixes: ReadonlyArray<{ addr: Uint8Array; len: number }>;
  flows = 0;
  readonly stats: Ip6FilterStats = {
    passedOut: 0,
    passedIn: 0,
    flowsCreated: 0,
    pinholeHits: 0,
    icmpErrorsPassed: 0,
    dropped: new Float64Array(IP6_DROP_REASONS.length),
  };

  constructor(opts: Ip6FilterOptions) {
    let cap = 1;
    while (cap < Math.max(16, opts.capacity)) cap *= 2;
    this.capacity = cap;
    this.mask = cap - 1;
    this.keys = new Uint32Array(cap * KEY_WORDS);
    this.expires = new Float64Array(cap);
    this.states = new Uint8Array(cap);
    this.filtering = opts.filtering;
    const holes = opts.pinholes ?? [];
    this.pinholeCount = holes.length;
    this.pinholes = new Uint32Array(Math.max(1, holes.length) * 5);
    holes.forEach((p, i) => {
      for (let w = 0; w < 4; w++) this.pinholes[i * 5 + w] = word(p.address, 4 * w);
      this.pinholes[i * 5 + 4] = (p.proto << 16) | p.port;
    });
    this.prefixes = opts.insidePrefixes ?? [];
  }

  /** Drops counted for `reason`. */
  droppedFor(reason: Ip6DropReason): number {
    return this.stats.dropped[IP6_DROP_REASONS.indexOf(reason)];
  }

  /**
   * The verdict on the IPv6 packet at buf[off..off+len): FORWARD (written back unchanged) or
   * DROP. `side`: SIDE_INSIDE or SIDE_OUTSIDE, anything else: by the inside prefixes. `now` in ms.
   */
  process(buf: Uint8Array, off: number, len: number, now: number, side: number): number {
    const v = this.verdict(buf, off, len, now, side);
    // The kernel decrements the hop limit on the way into the TUN and again on the way out (policy
    // routing, as for IPv4's TTL): add the first one back, else traceroute shows the gateway twice.
    // The IPv6 header has no checksum to update.
    if (v === FORWARD && buf[off + 7] < 255) buf[off + 7]++;
    return v;
  }

  private verdict(buf: Uint8Array, off: number, len: number, now: number, side: number): number {
    if (len < 40 || buf[off] >>> 4 !== 6) return this.drop(R_MALFORMED);
    // Link-scope and multicast destinations are never forwarded (ND, router solicitations, MLD):
    // the host plan steers none here; what comes is the kernel's own chatter on the TUN.
    const d0 = buf[off + 24];
    if (d0 === 0xff || (d0 === 0xfe && (buf[off + 25] & 0xc0) === 0x80)) return this.drop(R_LINK_SCOPE);
    if (side !== SIDE_INSIDE && side !== SIDE_OUTSIDE)
      side = this.insideAddress(buf, off + 8) ? SIDE_INSIDE : SIDE_OUTSIDE;
    // Skip the extension headers (hop-by-hop, routing, destination options) to the transport.
    let nh = buf[off + 6];
    let p = off + 40;
    const end = off + Math.min(len, 40 + ((buf[off + 4] << 8) | buf[off + 5]));
    for (let n = 0; n < 8 && (nh === 0 || nh === 43 || nh === 60 || nh === 44); n++) {
      if (p + 8 > end) return this.drop(R_MALFORMED);
      if (nh === 44) {
        // A fragment: the first has the transport header, the others cannot be matched.
        const fragOff = ((buf[p + 2] << 8) | buf[p + 3]) & 0xfff8;
        if (fragOff !== 0) return side === SIDE_INSIDE ? this.passOut() : this.drop(R_FRAGMENT);
        nh = buf[p];
        p += 8;
      } else {
        const next = buf[p];
        p += (buf[p + 1] + 1) * 8;
        nh = next;
      }
    }
    if (side === SIDE_INSIDE) return this.outbound(buf, off, p, end, nh, now);
    return this.inbound(buf, off, p, end, nh, now);
  }

  /** The counters as the stats reply shows them (control plane). */
  counters(now: number): Record<string, number> {
    const st = this.stats;
    const out: Record<string, number> = {
      flows: this.liveFlows(now),
      capacity: this.capacity,
      passedOut: st.passedOut,
      passedIn: st.passedIn,
      flowsCreated: st.flowsCreated,
      pinholeHits: st.pinholeHits,
      icmpErrorsPassed: st.icmpErrorsPassed,
    };
    let dropped = 0;
    IP6_DROP_REASONS.forEach((r, i) => {
      out[`drop_${r}`] = st.dropped[i];
      dropped += st.dropped[i];
    });
    out.dropped = dropped;
    return out;
  }

  /** Flows not yet expired (slots are reused once expired, nothing is swept): for stats. */
  liveFlows(now: number): number {
    let n = 0;
    for (let i = 0; i < this.capacity; i++)
      if (this.states[i] !== 0 && this.states[i] !== ST_PINHOLE && this.expires[i] > now) n++;
    return n;
  }

  private outbound(buf: Uint8Array, off: number, p: number, end: number, nh: number, now: number): number {
    if (nh === IPPROTO_ICMPV6) {
      if (p + 8 > end) return this.drop(R_MALFORMED);
      const type = buf[p];
      if (type !== 128) return this.passOut(); // errors and the rest go out as they are
      this.key(buf, off + 8, off + 24, nh, (buf[p + 4] << 8) | buf[p + 5], 0);
      return this.track(now, IPV6_TIMEOUTS.icmpEcho, ST_OTHER);
    }
    if (nh !== IPPROTO_TCP && nh !== IPPROTO_UDP) return this.passOut();
    if (p + (nh === IPPROTO_TCP ? 20 : 8) > end) return this.drop(R_MALFORMED);
    const sport = (buf[p] << 8) | buf[p + 1];
    const dport = (buf[p + 2] << 8) | buf[p + 3];
    this.key(buf, off + 8, off + 24, nh, sport, dport);
    if (nh === IPPROTO_UDP) return this.track(now, IPV6_TIMEOUTS.udp, ST_OTHER);
    const flags = buf[p + 13];
    const slot = this.find(now);
    if (slot >= 0) {
      this.tcpUpdate(slot, flags, now);
      return this.passOut();
    }
    // A new TCP flow begins with a SYN; anything else from the inside still goes out (the other
    // end answers it with a reset), but opens nothing.
    if ((flags & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN) return this.passOut();
    return this.track(now, IPV6_TIMEOUTS.tcpTransitory, ST_TCP_OPENING);
  }

  private inbound(buf: Uint8Array, off: number, p: number, end: number, nh: number, now: number): number {
    if (nh === IPPROTO_ICMPV6) {
      if (p + 8 > end) return this.drop(R_MALFORMED);
      const type = buf[p];
      if (type === 129) {
        this.key(buf, off + 24, off + 8, nh, (buf[p + 4] << 8) | buf[p + 5], 0);
        return this.find(now) >= 0 ? this.passIn() : this.drop(R_UNSOLICITED_ICMP);
      }
      if (type >= 1 && type <= 4) return this.icmpError(buf, p + 8, end, now);
      return this.drop(R_UNSOLICITED_ICMP);
    }
    if (nh !== IPPROTO_TCP && nh !== IPPROTO_UDP) return this.drop(R_OTHER);
    if (p + (nh === IPPROTO_TCP ? 20 : 8) > end) return this.drop(R_MALFORMED);
    const sport = (buf[p] << 8) | buf[p + 1];
    const dport = (buf[p + 2] << 8) | buf[p + 3];
    this.key(buf, off + 24, off + 8, nh, dport, sport);
    const slot = this.find(now);
    if (slot >= 0) {
      if (nh === IPPROTO_TCP) this.tcpUpdate(slot, buf[p + 13], now);
      // UDP state is refreshed by outbound traffic only, so an outside host cannot keep it open.
      return this.passIn();
    }
    if (this.pinholeMatch(nh, dport) || this.dynamicPinhole(nh, dport, now)) {
      this.stats.pinholeHits++;
      if (nh === IPPROTO_TCP && (buf[p + 13] & (TCP_SYN | TCP_ACK)) === TCP_SYN)
        this.track(now, IPV6_TIMEOUTS.tcpTransitory, ST_TCP_OPENING);
      return this.passIn();
    }
    return this.drop(nh === IPPROTO_TCP ? R_UNSOLICITED_TCP : R_UNSOLICITED_UDP);
  }

  /** An inbound ICMPv6 error quoting, at q, a packet an inside host sent: passed if its flow exists. */
  private icmpError(buf: Uint8Array, q: number, end: number, now: number): number {
    if (q + 48 > end || buf[q] >>> 4 !== 6) return this.drop(R_ICMP_ERROR);
    const nh = buf[q + 6];
    const t = q + 40;
    if (nh === IPPROTO_TCP || nh === IPPROTO_UDP)
      this.key(buf, q + 8, q + 24, nh, (buf[t] << 8) | buf[t + 1], (buf[t + 2] << 8) | buf[t + 3]);
    else if (nh === IPPROTO_ICMPV6 && buf[t] === 128)
      this.key(buf, q + 8, q + 24, nh, (buf[t + 4] << 8) | buf[t + 5], 0);
    else return this.drop(R_ICMP_ERROR);
    if (this.find(now) < 0) return this.drop(R_ICMP_ERROR);
    this.stats.icmpErrorsPassed++;
    return this.passIn();
  }

  /** Fills the lookup key; the filtering mode widens what a UDP flow admits (RFC 4787 terms). */
  private key(
    buf: Uint8Array,
    inside: number,
    outside: number,
    proto: number,
    inPort: number,
    outPort: number,
  ): void {
    const k = this.k;
    const mode = proto === IPPROTO_UDP ? this.filtering : "address-port-dependent";
    for (let w = 0; w < 4; w++) {
      k[w] = word(buf, inside + 4 * w);
      k[4 + w] = mode === "endpoint-independent" ? 0 : word(buf, outside + 4 * w);
    }
    k[8] = proto;
    k[9] = ((inPort << 16) | (mode === "address-port-dependent" ? outPort : 0)) >>> 0;
  }

  private hash(k: Uint32Array): number {
    let h = 0x811c9dc5;
    for (let w = 0; w < KEY_WORDS; w++) h = Math.imul(h ^ k[w], 0x01000193);
    return (h ^ (h >>> 15)) & this.mask;
  }

  /** The live slot holding the key (the flow key unless told), or -1. */
  private find(now: number, k: Uint32Array = this.k): number {
    let s = this.hash(k);
    for (let n = 0; n < MAX_PROBE; n++, s = (s + 1) & this.mask) {
      if (this.states[s] === 0) return -1;
      if (this.expires[s] <= now) continue;
      const b = s * KEY_WORDS;
      let same = true;
      for (let w = 0; w < KEY_WORDS && same; w++) same = this.keys[b + w] === k[w];
      if (same) return s;
    }
    return -1;
  }

  /** Refreshes the key's flow or makes it (outbound: timeout `sec`); DROP when the table is full. */
  private track(now: number, sec: number, state: number): number {
    const found = this.find(now);
    if (found >= 0) {
      this.expires[found] = now + sec * 1000;
      return this.passOut();
    }
    if (this.insert(this.k, now, now + sec * 1000, state) < 0) return this.drop(R_TABLE_FULL);
    this.stats.flowsCreated++;
    return this.passOut();
  }

  /** Puts key `k` in a free slot of its window; the slot, or -1 when the window is full. */
  private insert(k: Uint32Array, now: number, expires: number, state: number): number {
    let s = this.hash(k);
    for (let n = 0; n < MAX_PROBE; n++, s = (s + 1) & this.mask) {
      if (this.states[s] === 0 || this.expires[s] <= now) {
        const b = s * KEY_WORDS;
        for (let w = 0; w < KEY_WORDS; w++) this.keys[b + w] = k[w];
        this.states[s] = state;
        this.expires[s] = expires;
        return s;
      }
    }
    return -1;
  }

  /** The pinhole key: its inside address words (pk[0..3]) set by the caller, then the rest. */
  private pinholeKey(proto: number, port: number): Uint32Array {
    const pk = this.pk;
    for (let w = 4; w < 8; w++) pk[w] = 0;
    pk[8] = proto | PINHOLE_MARK;
    pk[9] = port;
    return pk;
  }

  /** The pinhole key of the inside address `address` (16 bytes), control plane. */
  private pinholeKeyOf(address: Uint8Array, proto: number, port: number): Uint32Array {
    for (let w = 0; w < 4; w++) this.pk[w] = word(address, 4 * w);
    return this.pinholeKey(proto, port);
  }

  /** An inbound packet's match with a run-time pinhole (the flow key's inside address in k[0..3]). */
  private dynamicPinhole(proto: number, port: number, now: number): boolean {
    for (let w = 0; w < 4; w++) this.pk[w] = this.k[w];
    return this.find(now, this.pinholeKey(proto, port)) >= 0;
  }

  /**
   * Opens (or renews) a run-time pinhole to `address` (16 bytes) `port` until `expiresMs` (the
   * clock of `process`): false when its window of the table has no free slot (control plane).
   */
  openPinhole(address: Uint8Array, proto: number, port: number, now: number, expiresMs: number): boolean {
    const pk = this.pinholeKeyOf(address, proto, port);
    const found = this.find(now, pk);
    if (found >= 0) {
      this.expires[found] = expiresMs;
      return true;
    }
    return this.insert(pk, now, expiresMs, ST_PINHOLE) >= 0;
  }

  /**
   * Closes every run-time pinhole: after a restart their record (pcp6.ts) is gone, and a PCP
   * client asks again when it sees the epoch begin anew (RFC 6887 §8.5).
   */
  closeAllPinholes(): void {
    for (let i = 0; i < this.capacity; i++) if (this.states[i] === ST_PINHOLE) this.expires[i] = 0;
  }

  /** Closes a run-time pinhole (its slot counts as expired, so probing goes past it). */
  closePinhole(address: Uint8Array, proto: number, port: number, now: number): void {
    const found = this.find(now, this.pinholeKeyOf(address, proto, port));
    if (found >= 0) this.expires[found] = 0;
  }

  private tcpUpdate(slot: number, flags: number, now: number): void {
    let st = this.states[slot];
    if ((flags & (TCP_FIN | TCP_RST)) !== 0) st = ST_TCP_CLOSING;
    else if (st === ST_TCP_OPENING && (flags & TCP_ACK) !== 0 && (flags & TCP_SYN) === 0)
      st = ST_TCP_ESTABLISHED;
    this.states[slot] = st;
    const sec = st === ST_TCP_ESTABLISHED ? IPV6_TIMEOUTS.tcpEstablished : IPV6_TIMEOUTS.tcpTransitory;
    this.expires[slot] = now + sec * 1000;
  }

  private pinholeMatch(proto: number, port: number): boolean {
    const k = this.k;
    const want = (proto << 16) | port;
    for (let i = 0; i < this.pinholeCount; i++) {
      const b = i * 5;
      if (
        this.pinholes[b + 4] === want &&
        this.pinholes[b] === k[0] &&
        this.pinholes[b + 1] === k[1] &&
        this.pinholes[b + 2] === k[2] &&
        this.pinholes[b + 3] === k[3]
      )
        return true;
    }
    return false;
  }

  private insideAddress(buf: Uint8Array, at: number): boolean {
    for (let i = 0; i < this.prefixes.length; i++) {
      const { addr, len } = this.prefixes[i];
      let ok = true;
      for (let bit = 0; bit < len && ok; bit += 8) {
        const m = len - bit >= 8 ? 0xff : (0xff << (8 - (len - bit))) & 0xff;
        ok = (buf[at + bit / 8] & m) === (addr[bit / 8] & m);
      }
      if (ok) return true;
    }
    return false;
  }

  private passOut(): number {
    this.stats.passedOut++;
    return FORWARD;
  }

  private passIn(): number {
    this.stats.passedIn++;
    return FORWARD;
  }

  private drop(reason: number): number {
    this.stats.dropped[reason]++;
    return DROP;
  }
}
