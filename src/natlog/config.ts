// The [nat_log] settings: where the NAT event log goes and what it holds.
import type { LogTarget } from "./sender.ts";

export interface NatLogConfig {
  /** RFC 5424 syslog: udp://, tcp:// (RFC 6587 octet counting) or unix:/path; undefined: none. */
  syslog?: { text: string; target: LogTarget };
  /** IPFIX (RFC 7011, RFC 8158) over UDP; undefined: none. */
  ipfix?: { text: string; target: LogTarget };
  /** Every flow (session) as well as every mapping (RFC 7422 §1: a carrier cannot keep that). */
  sessions: boolean;
  /** The remote endpoint in each record (RFC 6888 REQ-12: not by default). */
  destination: boolean;
  /** Events the engine's ring holds between drains (a full ring loses events, counted). */
  bufferEvents: number;
  /** Seconds between IPFIX template resends (RFC 7011 §8.4). */
  templateIntervalSec: number;
  /** The IPFIX Observation Domain ID. */
  observationDomain: number;
}

export function defaultNatLogConfig(): NatLogConfig {
  return {
    sessions: false,
    destination: false,
    bufferEvents: 65_536,
    templateIntervalSec: 60,
    observationDomain: 1,
  };
}

/** Whether anything is to be logged (a target is set). */
export function natLogEnabled(c: NatLogConfig): boolean {
  return c.syslog !== undefined || c.ipfix !== undefined;
}
