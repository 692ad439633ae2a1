// RFC 5382 REQ-4: an unsolicited inbound SYN is answered with ICMP port unreachable (type 3 code
// 3), but not before 6 s: if the inside host sends its own SYN for that connection meanwhile (a
// simultaneous open, REQ-2), no answer goes out at all. The SYN itself is dropped at once (its
// sender retransmits, and a retransmission finds the connection the inside host opened); what is
// kept is only what the error quotes, the SYN's IP header and first 8 bytes (RFC 792), in a
// small direct-mapped table. A SYN whose slot is taken, or that carries IP options, goes
// unanswered (counted): a bounded table, no allocation per packet, no packet held. The errors are
// built into buffers made once and queued here until the datapath takes them (engine.takeAnswer).
import { readU16, readU32 } from "../packet/checksum.ts";
import { IPPROTO_TCP } from "../packet/ipv4.ts";
import {
  ICMP_CODE_PORT_UNREACH,
  ICMP_DEST_UNREACH,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
} from "../packet/l4.ts";
import {
  C_UNSOLICITED_SYN_REPLIES,
  C_UNSOLICITED_SYN_SIMULTANEOUS,
  C_UNSOLICITED_SYN_UNANSWERED,
} from "./counters.ts";
import { hashTuple, randomSeed } from "./hash-index.ts";
import { buildIcmpError } from "./icmp.ts";

/**
 * REQ-4: at least 6 seconds before the answer, on the caller's millisecond clock (a whole-second
 * clock would answer a SYN that came late in a second after barely 5).
 */
export const UNSOLICITED_SYN_DELAY_MS = 6000;
const SLOTS = 256;
/** An IPv4 header without options and the first 8 bytes of the TCP header. */
const QUOTE = 28;
/** The error: IPv4 and ICMP headers, then the quote. */
export const UNSOLICITED_SYN_REPLY_LEN = 28 + QUOTE;

export class UnsolicitedSyns {
  private readonly quotes = new Uint8Array(SLOTS * QUOTE);
  /** The caller's clock (ms) at which slot i's answer is due; 0 when the slot is free. */
  private readonly dueMs = new Float64Array(SLOTS);
  private readonly replies: Uint8Array[] = [];
  /** Slots whose answers are built and wait to be taken, oldest first (a ring). */
  private readonly ready = new Uint16Array(SLOTS);
  private readyHead = 0;
  private readyCount = 0;
  private readonly seed: number;
  /** The engine's counters: answers sent, left out for a simultaneous open, left unanswered. */
  private readonly counters: Float64Array;
  count = 0;

  /** `hashSeed`: as the engine's tables' (0: a random one). */
  constructor(hashSeed: number, counters: Float64Array) {
    this.counters = counters;
    const buf = new Uint8Array(SLOTS * UNSOLICITED_SYN_REPLY_LEN);
    for (let i = 0; i < SLOTS; i++)
      this.replies.push(buf.subarray(i * UNSOLICITED_SYN_REPLY_LEN, (i + 1) * UNSOLICITED_SYN_REPLY_LEN));
    this.seed = randomSeed(hashSeed, 4);
  }

  get byteLength(): number {
    return this.quotes.byteLength + this.dueMs.byteLength + SLOTS * UNSOLICITED_SYN_REPLY_LEN;
  }

  private slot(remAddr: number, remPort: number, outAddr: number, outPort: number): number {
    return hashTuple(this.seed, IPPROTO_TCP, remAddr, remPort, outAddr, outPort) & (SLOTS - 1);
  }

  /**
   * Notes the packet at b[off, ...), dropped as unsolicited at `nowMs`, when it is a bare SYN; a
   * retransmission of one already noted keeps the first arrival's time.
   */
  note(b: Uint8Array, off: number, nowMs: number): void {
    if (b[off + 9] !== IPPROTO_TCP) return;
    // IP options would not fit the fixed-size record: such a SYN goes unanswered.
    const l4 = off + 20;
    if (b[off] !== 0x45) {
      if ((b[off + ((b[off] & 0x0f) << 2) + 13] & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) === TCP_SYN)
        this.counters[C_UNSOLICITED_SYN_UNANSWERED]++;
      return;
    }
    if ((b[l4 + 13] & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) !== TCP_SYN) return;
    const src = readU32(b, off + 12);
    const dst = readU32(b, off + 16);
    const sport = readU16(b, l4);
    const dport = readU16(b, l4 + 2);
    const i = this.slot(src, sport, dst, dport);
    if (this.dueMs[i] !== 0) {
      if (!this.holds(i, src, sport, dst, dport)) this.counters[C_UNSOLICITED_SYN_UNANSWERED]++;
      return;
    }
    this.quotes.set(b.subarray(off, off + QUOTE), i * QUOTE);
    this.dueMs[i] = Math.max(0, nowMs) + UNSOLICITED_SYN_DELAY_MS;
    this.count++;
  }

  /**
   * The inside host sent a SYN from outAddr:outPort to remAddr:remPort (as translated): a SYN
   * waiting the other way is part of a simultaneous open and gets no answer.
   */
  cancel(remAddr: number, remPort: number, outAddr: number, outPort: number): void {
    // The fast path passes addresses signed (never boxed); here they are unsigned again.
    remAddr >>>= 0;
    outAddr >>>= 0;
    if (this.count === 0) return;
    const i = this.slot(remAddr, remPort, outAddr, outPort);
    if (this.dueMs[i] === 0 || !this.holds(i, remAddr, remPort, outAddr, outPort)) return;
    this.dueMs[i] = 0;
    this.count--;
    this.counters[C_UNSOLICITED_SYN_SIMULTANEOUS]++;
  }

  /** Builds the answers due by `nowMs`; take() hands them out. */
  expire(nowMs: number): void {
    for (let i = 0; i < SLOTS && this.count > 0; i++) {
      const due = this.dueMs[i];
      if (due === 0 || due > nowMs) continue;
      this.dueMs[i] = 0;
      this.count--;
      // Answers nobody took (a caller that never sends) are not built again over one still waiting.
      if (this.readyCount === SLOTS) {
        this.counters[C_UNSOLICITED_SYN_UNANSWERED]++;
        continue;
      }
      const q = i * QUOTE;
      // From the address the SYN was sent to, as the host itself would answer (RFC 792).
      const from = readU32(this.quotes, q + 16);
      buildIcmpError(
        this.replies[i],
        this.quotes,
        q,
        QUOTE,
        from,
        ICMP_DEST_UNREACH,
        ICMP_CODE_PORT_UNREACH,
        0,
      );
      this.ready[(this.readyHead + this.readyCount) % SLOTS] = i;
      this.readyCount++;
      this.counters[C_UNSOLICITED_SYN_REPLIES]++;
    }
  }

  /** The next answer to send (an ICMP error for an outside host), or undefined when none waits. */
  take(): Uint8Array | undefined {
    if (this.readyCount === 0) return undefined;
    const i = this.ready[this.readyHead];
    this.readyHead = (this.readyHead + 1) % SLOTS;
    this.readyCount--;
    return this.replies[i];
  }

  private holds(i: number, src: number, sport: number, dst: number, dport: number): boolean {
    const q = this.quotes;
    const o = i * QUOTE;
    return (
      readU32(q, o + 12) === src &&
      readU32(q, o + 16) === dst &&
      readU16(q, o + 20) === sport &&
      readU16(q, o + 22) === dport
    );
  }
}
