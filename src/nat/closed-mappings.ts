// TCP mappings whose connections have all finished, oldest first: where a new connection gets an
// outside port when no other is to be had (issue 17).
//
// A mapping holds its port while one of its flows lives, and a TCP flow lives 4 minutes after its
// connection closed (the transitory timeout, RFC 5382 REQ-5; after a reset RFC 7857 §2.2), so that
// late segments are still translated. Short connections (HTTP/1.0, a page's assets) then hold a
// port each for 4 minutes: one host opening 5 a second holds its share of interface mode's range,
// and ab -n 30000 -c 100 stops after a share's worth. The kernel's NAT keeps going because it keeps
// the inside port, and a server that holds the old 4-tuple in TIME-WAIT takes the next SYN on it.
//
// So a mapping all of whose connections have finished (closed by a reset the tracker believed, or
// both FINs sent and acknowledged: src/nat/tcp-state.ts) gives its port to a new inside endpoint,
// but only when the new flow would otherwise be refused (the host holds its share, or the range or
// the mapping table is used up); until then it keeps its 4 minutes. Its flows go with it.
//
// RFC 6888 REQ-11 d forbids deleting mappings to make room. We read it as protecting mappings in
// use: one with a connection that has not finished (a half-closed one included) or with a pin (a
// forward, PCP, an ALG's expectation) is never taken, and live mappings keep endpoint-independent
// mapping (RFC 4787 REQ-1, RFC 5382 REQ-1). A mapping whose every connection has finished serves
// no one: its flows wait only for duplicates, which the rules below keep from harming anyone.
//
// Which one, within a bounded look (the oldest CANDIDATES, their first FLOWS_CHECKED flows):
//  1. The new flow's own host's, on the host's outside address: the oldest one whose flows all
//     went to other remote endpoints than the new flow's, else its oldest. The remote may hold the
//     old connection in TIME-WAIT (the server closes first in HTTP/1.0) and takes a SYN on it only
//     when its timestamp is newer (or its sequence number beyond the old connection's; Linux
//     tcp_timewait_state_process, RFC 6191). A Linux client offsets its timestamp clock per pair
//     of addresses (secure_tcp_ts_off), not per port: all its connections to one server carry
//     increasing timestamps, so its own oldest finished mapping is taken.
//  2. Unless the host holds its share (the quota counts mappings: a host at its share only ever
//     trades one of its own for another), another host's on the same address whose flows all went
//     elsewhere: the outside 5-tuple is then new to every remote (port overlapping, RFC 7857 §3).
//     Another host's timestamps are unrelated to the old connection's, so it never gets a mapping
//     towards the same remote endpoint.
// Where a remote refuses the SYN anyway (a client without timestamps), it answers with the old
// connection's ACK, the client resets that (the tracker lets the reset through) and the remote
// takes the SYN's retransmission a second later.
//
// Late segments of the old connection then meet the new mapping: from another remote they are
// filtered (or dropped as TCP without a flow), from the same remote (same host only) they reach a
// connection whose window they miss (ignored, or reset in SYN-SENT); ICMP errors quoting the old
// connection find no flow, or quote numbers out of the new connection's window, which TCP ignores.
// UDP and ICMP mappings never finish: they are never taken.
//
// The bookkeeping runs where flows are added, finish, come back and expire, and where pins
// change: never per packet of an established flow. Nothing allocates.
import { IPPROTO_TCP } from "../packet/ipv4.ts";
import { FifoLists } from "./fifo-lists.ts";
import { F_META, F_REM_ADDR, FLOW_WORDS, type FlowTable, NO_FLOW } from "./flow-table.ts";
import { NO_HOST } from "./host-table.ts";
import { M_OUT_ADDR, MAPPING_WORDS, type MappingTable, NO_MAPPING } from "./mapping-table.ts";
import type { PinRegistry } from "./pins.ts";
import type { PortQuota } from "./port-quota.ts";

/** Finished mappings looked at per pick, oldest first (per list). */
export const CANDIDATES = 8;
/** Flows of a candidate compared with the new flow's remote; one with more counts as a match. */
export const FLOWS_CHECKED = 8;

export class ClosedMappings {
  /** Per mapping: its flows whose connection has not finished. */
  private readonly open: Uint32Array;
  /** One list per host (index), and one of every finished mapping. */
  private readonly byHost: FifoLists;
  private readonly all: FifoLists;
  private readonly mappings: MappingTable;
  private readonly flows: FlowTable;
  private readonly pins: PinRegistry;
  private readonly quota: PortQuota;
  /** Finished mappings now listed. */
  count = 0;

  constructor(
    mappings: MappingTable,
    flows: FlowTable,
    pins: PinRegistry,
    quota: PortQuota,
    hostCapacity: number,
  ) {
    this.mappings = mappings;
    this.flows = flows;
    this.pins = pins;
    this.quota = quota;
    this.open = new Uint32Array(mappings.capacity);
    this.byHost = new FifoLists(mappings.capacity, hostCapacity);
    this.all = new FifoLists(mappings.capacity, 1);
  }

  get byteLength(): number {
    return this.open.byteLength + this.byHost.byteLength + this.all.byteLength;
  }

  /** A flow (a connection not yet finished) joined mapping m. */
  flowAdded(m: number): void {
    this.open[m]++;
    this.review(m);
  }

  /** One of m's connections finished (TCP_FINISHED). */
  flowFinished(m: number): void {
    if (this.open[m] > 0) this.open[m]--;
    this.review(m);
  }

  /** One of m's finished connections started again (TCP_REOPENED). */
  flowReopened(m: number): void {
    this.open[m]++;
    this.review(m);
  }

  /** A flow left m; `finished`: its connection had finished. */
  flowRemoved(m: number, finished: boolean): void {
    if (!finished && this.open[m] > 0) this.open[m]--;
    this.review(m);
  }

  /** Mapping m is gone (its record may be reused). */
  mappingRemoved(m: number): void {
    this.unlist(m);
    this.open[m] = 0;
  }

  /** Lists m, or takes it off, as it is now; call it too when m's pins change. */
  review(m: number): void {
    const host = this.quota.hostOf(m);
    const finished =
      this.mappings.proto[m] === IPPROTO_TCP &&
      this.open[m] === 0 &&
      this.mappings.hasFlows(m) &&
      this.pins.count[m] === 0 &&
      host !== NO_HOST;
    if (finished === this.all.has(m)) return;
    if (!finished) {
      this.unlist(m);
      return;
    }
    // Appended as the newest: the list is in the order the mappings finished.
    this.byHost.push(host, m);
    this.all.push(0, m);
    this.count++;
  }

  /** Whether mapping m is listed as finished (for tests and listings). */
  has(m: number): boolean {
    return this.all.has(m);
  }

  /**
   * The finished mapping whose port a new TCP flow from `host` (an index, or NO_HOST) to
   * remAddr:remPort may take on outside address `outAddr` (see the rules above), or NO_MAPPING.
   * `otherHosts`: whether another host's may be taken (not when the host holds its share).
   */
  pick(host: number, outAddr: number, remAddr: number, remPort: number, otherHosts: boolean): number {
    const mu = this.mappings.u32;
    if (host !== NO_HOST) {
      let oldest = NO_MAPPING;
      let m = this.byHost.oldest(host);
      for (let k = 0; m >= 0 && k < CANDIDATES; k++, m = this.byHost.after(m)) {
        if (mu[m * MAPPING_WORDS + M_OUT_ADDR] !== outAddr) continue;
        if (this.wentElsewhere(m, remAddr, remPort)) return m;
        if (oldest === NO_MAPPING) oldest = m;
      }
      if (oldest !== NO_MAPPING) return oldest;
    }
    if (!otherHosts) return NO_MAPPING;
    let m = this.all.oldest(0);
    for (let k = 0; m >= 0 && k < CANDIDATES; k++, m = this.all.after(m))
      if (mu[m * MAPPING_WORDS + M_OUT_ADDR] === outAddr && this.wentElsewhere(m, remAddr, remPort)) return m;
    return NO_MAPPING;
  }

  /** Whether none of m's flows went to remAddr:remPort (false when m has too many to tell). */
  private wentElsewhere(m: number, remAddr: number, remPort: number): boolean {
    const u = this.flows.u32;
    const mt = this.mappings;
    for (let f = mt.firstFlow(m), k = 0; f !== NO_FLOW; f = mt.nextFlow(f), k++) {
      if (k === FLOWS_CHECKED) return false;
      const b = f * FLOW_WORDS;
      if (u[b + F_REM_ADDR] === remAddr && u[b + F_META] >>> 16 === remPort) return false;
    }
    return true;
  }

  private unlist(m: number): void {
    if (!this.all.has(m)) return;
    this.byHost.remove(m);
    this.all.remove(m);
    this.count--;
  }
}
