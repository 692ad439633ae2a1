// A stop that ends the table (not `masq stop --keep-state`) ends every mapping the NAT event log
// announced, so the log says so: each live flow goes the way an expiry takes it (its mapping's
// deletion record with its last flow, a session record when sessions are logged), then each
// pinned mapping's deletion and each port block's (held or cooling). An abuse desk then reads
// an end time for every record that has a start (RFC 6888 §4: creation and deletion), instead of
// mappings that seem to last until the next start. The ring is bounded: `flush` (the exporter's
// drain) runs whenever it is half full, so nothing is lost to the ring on the way out.

import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { expireFlow } from "./flow-life.ts";
import { EV_MAPPING_DELETED, EV_PORT_BLOCK_DELETED } from "./nat-events.ts";
import type { EngineState } from "./state.ts";

export interface EndOfTable {
  flows: number;
  pins: number;
  blocks: number;
}

/** Ends every flow, pin and port block in the log; says how many of each there were. */
export function logEndOfTable(s: EngineState, flush: () => void): EndOfTable {
  const out: EndOfTable = { flows: 0, pins: 0, blocks: 0 };
  const ev = s.events;
  if (ev === null) return out;
  const ring = ev.ring;
  const roomy = () => {
    if (ring.pending >= ring.capacity / 2) flush();
  };
  const ft = s.flowTable;
  for (let f = 0; f < ft.capacity; f++) {
    if (!ft.isLive(f)) continue;
    s.wheel.unschedule(f);
    expireFlow(s, f);
    out.flows++;
    roomy();
  }
  // What no flow held: pinned mappings (forwards, NAT-PMP/PCP, ALG expectations). Deterministic
  // mode and port blocks log no mapping of their own.
  if (s.det === null)
    for (const p of s.pins.all()) {
      const inBlock = s.inBlock.length !== 0 && s.inBlock[p.mapping] !== 0;
      if (inBlock) continue;
      ev.mapping(s, EV_MAPPING_DELETED, p.mapping, 0, 0);
      out.pins++;
      roomy();
    }
  for (const proto of [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP])
    s.blocksFor(proto)?.forEach((inAddr, outIdx, first, last) => {
      ev.block(s, EV_PORT_BLOCK_DELETED, proto, inAddr, s.outside[outIdx], first, last);
      out.blocks++;
      roomy();
    });
  return out;
}
