// Where the engine's paths report NAT events (nat-events.ts) when `[nat_log]` is on: mappings made
// and gone (RFC 6888 §4: what an abuse report needs), flows only with `sessions` (RFC 7422 §1: a
// log per connection is what a carrier cannot keep), and a host refused at its port quota. Called
// on the slow path and at expiry, never per packet of an established flow.
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { F_IN_ADDR, F_OUT_ADDR, F_PORTS, F_REM_ADDR, FLOW_WORDS } from "./flow-table.ts";
import { M_IN_ADDR, M_OUT_ADDR, M_PORTS, MAPPING_WORDS } from "./mapping-table.ts";
import {
  EV_MAPPING_CREATED,
  EV_MAPPING_DELETED,
  EV_QUOTA_EXCEEDED,
  EV_SESSION_CREATED,
  EV_SESSION_DELETED,
  NatEventRing,
} from "./nat-events.ts";
import { portSlot } from "./port-quota.ts";
import type { EngineState } from "./state.ts";

/** What the engine records: the ring, and whether every flow is an event too. */
export interface NatEventConfig {
  /** Events the ring holds between drains. */
  capacity: number;
  /** Flows (sessions) as well as mappings. */
  sessions: boolean;
}

export class EngineEvents {
  readonly ring: NatEventRing;
  readonly sessions: boolean;
  /** The second of each host's latest quota event: one a second per host, not one per SYN. */
  private readonly quotaSec: Uint32Array;

  constructor(config: NatEventConfig, maxHosts: number) {
    this.ring = NatEventRing.create(config.capacity);
    this.sessions = config.sessions;
    this.quotaSec = new Uint32Array(maxHosts);
  }

  /** Mapping m was made (EV_MAPPING_CREATED, for remote remAddr:remPort) or is going. */
  mapping(s: EngineState, kind: number, m: number, remAddr: number, remPort: number): void {
    const u = s.mappingTable.u32;
    const b = m * MAPPING_WORDS;
    const ports = u[b + M_PORTS];
    this.ring.push(
      kind,
      s.mappingTable.proto[m],
      s.nowMs,
      u[b + M_IN_ADDR],
      ports >>> 16,
      u[b + M_OUT_ADDR],
      ports & 0xffff,
      remAddr,
      remPort,
    );
  }

  /** Mapping m moves to outside address `to` (a new public address): the old one goes. */
  moved(s: EngineState, m: number, to: number): void {
    this.mapping(s, EV_MAPPING_DELETED, m, 0, 0);
    const b = m * MAPPING_WORDS;
    const ports = s.mappingTable.u32[b + M_PORTS];
    this.ring.push(
      EV_MAPPING_CREATED,
      s.mappingTable.proto[m],
      s.nowMs,
      s.mappingTable.u32[b + M_IN_ADDR],
      ports >>> 16,
      to,
      ports & 0xffff,
      0,
      0,
    );
  }

  /**
   * Flow f was made (`created`) or is ending. An address-only flow (GRE, ESP …: no mapping,
   * generic-flow.ts) is its own mapping and always logged; the others only with `sessions`.
   */
  flow(s: EngineState, f: number, created: boolean): void {
    const ft = s.flowTable;
    const proto = ft.proto(f);
    const mapped = proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_ICMP;
    if (mapped && !this.sessions) return;
    const kind = mapped
      ? created
        ? EV_SESSION_CREATED
        : EV_SESSION_DELETED
      : created
        ? EV_MAPPING_CREATED
        : EV_MAPPING_DELETED;
    const u = ft.u32;
    const b = f * FLOW_WORDS;
    const ports = u[b + F_PORTS];
    this.ring.push(
      kind,
      proto,
      s.nowMs,
      u[b + F_IN_ADDR],
      ports >>> 16,
      u[b + F_OUT_ADDR],
      ports & 0xffff,
      u[b + F_REM_ADDR],
      ft.remPort(f),
    );
  }

  /** A port block (ports first-last of outAddr) was given to inside host inAddr or freed. */
  block(
    s: EngineState,
    kind: number,
    proto: number,
    inAddr: number,
    outAddr: number,
    first: number,
    last: number,
  ): void {
    this.ring.push(kind, proto, s.nowMs, inAddr, first, outAddr, last, 0, 0);
  }

  /** Inside host `host` (hostTable index, address inAddr) was refused a `proto` mapping at its quota. */
  quota(s: EngineState, host: number, inAddr: number, proto: number): void {
    if (host < 0 || host >= this.quotaSec.length) return;
    const limit = s.portQuota.limit[portSlot(proto)];
    // + 1 so that second 0 of the clock is not taken for "never".
    if (this.quotaSec[host] === s.nowSec + 1) return;
    this.quotaSec[host] = s.nowSec + 1;
    this.ring.push(EV_QUOTA_EXCEEDED, proto, s.nowMs, inAddr, 0, 0, 0, 0, limit);
  }
}
