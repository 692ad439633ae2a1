// Every packet the engine sees ends in exactly one outcome, and every drop has a reason: nothing
// is lost silently. Counters are one Float64Array indexed by these constants (no strings per
// packet); names are for the control plane.
import { PACKET_ERROR_NAMES } from "../packet/validate.ts";

// Outcomes and events (not drops).
export const C_PACKETS = 0;
export const C_TRANSLATED_OUT = 1;
export const C_TRANSLATED_IN = 2;
export const C_HAIRPINNED = 3;
export const C_PASSTHROUGH = 4;
export const C_REPLIES = 5;
export const C_FLOWS_CREATED = 6;
export const C_FLOWS_EXPIRED = 7;
export const C_MAPPINGS_CREATED = 8;
export const C_MAPPINGS_EXPIRED = 9;
export const C_ICMP_ERRORS_TRANSLATED = 10;
export const C_FRAGMENTS_TRANSLATED = 11;
export const C_FRAGMENTS_HELD = 12;
export const C_FRAGMENTS_RELEASED = 13;
export const C_PORTS_PRESERVED = 14;
export const C_BYTES_OUT = 15;
export const C_BYTES_IN = 16;
export const C_DROPPED = 17;
export const C_PINS_CREATED = 18;
export const C_PINS_EXPIRED = 19;
// Application-level gateways (src/alg). They never drop: a command they cannot handle goes on
// unchanged and is counted here.
/** Commands whose address/port the ALG rewrote. */
export const C_ALG_REWRITES = 20;
/** Expectations (pins for related flows) created. */
export const C_ALG_EXPECTATIONS = 21;
/** Expectations refused: per-flow or total limit, or no mapping could be made. */
export const C_ALG_EXPECT_REFUSED = 22;
/** Segments rebuilt with another length (sequence numbers corrected from then on). */
export const C_ALG_RESIZED = 23;
/** Partial command lines held until the rest of the line came. */
export const C_ALG_LINES_HELD = 24;
/** Commands that looked like one the ALG handles but did not parse: passed unchanged. */
export const C_ALG_MALFORMED = 25;
/** Lines longer than the ALG's line buffer: passed unchanged, not inspected. */
export const C_ALG_OVERSIZED = 26;
/** Commands naming an address other than the sending host's: passed unchanged (bounce protection). */
export const C_ALG_FOREIGN_ADDRESS = 27;
/** Segments cut short: rewritten or held bytes would not fit in one packet (the sender resends the rest). */
export const C_ALG_SEGMENTS_CUT = 28;
/** Retransmissions of a rewritten range replayed with the same rewrite. */
export const C_ALG_REPLAYED = 29;
/** An ALG failed on a packet (a bug, not bad input): the packet went on as translated. */
export const C_ALG_ERRORS = 30;

// Drop reasons: 1..8 mirror packet/validate's PacketError so a validation error maps directly.
export const DROP_BASE = 32;
export const D_IP_TOO_SHORT = DROP_BASE + 1;
export const D_IP_BAD_VERSION = DROP_BASE + 2;
export const D_IP_BAD_HEADER_LENGTH = DROP_BASE + 3;
export const D_IP_BAD_TOTAL_LENGTH = DROP_BASE + 4;
export const D_IP_BAD_HEADER_CHECKSUM = DROP_BASE + 5;
export const D_L4_TRUNCATED = DROP_BASE + 6;
export const D_TCP_BAD_DATA_OFFSET = DROP_BASE + 7;
export const D_UDP_BAD_LENGTH = DROP_BASE + 8;
/**
 * A protocol masq cannot translate even by address: 0 (no protocol) and AH, whose integrity
 * check covers the addresses (RFC 4302 §3.3.3.1, RFC 3715 §2.1), so a translated packet would fail.
 */
export const D_UNSUPPORTED_PROTOCOL = DROP_BASE + 9;
/** Inbound to an outside address with no mapping: unsolicited (the secure default). */
export const D_NO_MAPPING = DROP_BASE + 10;
/** A mapping exists but the filtering policy refuses this remote (RFC 4787 REQ-8). */
export const D_FILTERED = DROP_BASE + 11;
export const D_FLOW_TABLE_FULL = DROP_BASE + 12;
export const D_MAPPING_TABLE_FULL = DROP_BASE + 13;
export const D_HOST_FLOW_LIMIT = DROP_BASE + 14;
export const D_HOST_TABLE_FULL = DROP_BASE + 15;
export const D_PORTS_EXHAUSTED = DROP_BASE + 16;
/** A TCP segment without SYN that would have to start a flow (mid-stream, e.g. after a restart). */
export const D_TCP_NO_FLOW = DROP_BASE + 17;
export const D_ICMP_UNSUPPORTED = DROP_BASE + 18;
/** An ICMP error whose embedded packet matches no flow. */
export const D_ICMP_ERROR_NO_FLOW = DROP_BASE + 19;
export const D_ICMP_ERROR_MALFORMED = DROP_BASE + 20;
export const D_FRAGMENT_BUFFER_FULL = DROP_BASE + 21;
export const D_FRAGMENT_TIMEOUT = DROP_BASE + 22;
export const D_TTL_EXCEEDED = DROP_BASE + 23;
/** Pool mode: a packet that is neither from an inside network nor to an outside address. */
export const D_NOT_OURS = DROP_BASE + 24;
/** Source is an outside address or a martian (0.0.0.0, broadcast, multicast) where it cannot be. */
export const D_BAD_ADDRESS = DROP_BASE + 25;
export const D_ENGINE_ERROR = DROP_BASE + 26;
/** A later fragment of a datagram whose first fragment was dropped. */
export const D_FRAGMENT_OF_DROPPED = DROP_BASE + 27;
// Where a packet came from does not match its source (src/nat/engine.ts, arrival side).
/** From the inside with a source on no inside network (BCP 38: nothing leaves spoofed). */
export const D_SPOOFED_SOURCE = DROP_BASE + 28;
/** From the outside with a source on an inside network: a forged inside host. */
export const D_INSIDE_SOURCE_FROM_OUTSIDE = DROP_BASE + 29;
/** From the outside, addressed straight to an inside address (routed, not translated). */
export const D_INSIDE_ADDRESS_FROM_OUTSIDE = DROP_BASE + 30;
// TCP tracking.
/** A RST whose sequence number is outside the receiver's window (RFC 5961 §3): a blind reset. */
export const D_TCP_RST_OUT_OF_WINDOW = DROP_BASE + 31;
/** Inbound half-open connections at their limit, none old enough to evict. */
export const D_HALF_OPEN_LIMIT = DROP_BASE + 32;
// Quotas and buffers.
/** The inside host holds its share of the protocol's outside ports (RFC 6888 REQ-4). */
export const D_HOST_PORT_QUOTA = DROP_BASE + 33;
/** The source holds its share of the held-fragment buffer. */
export const D_FRAGMENT_SOURCE_BUDGET = DROP_BASE + 34;
/**
 * Address-only NAT (src/nat/generic-flow.ts): another inside host already has a flow of this
 * protocol with this remote on the same public address, and their replies could not be told apart.
 */
export const D_PROTOCOL_REMOTE_TAKEN = DROP_BASE + 35;
/** The inside host's port blocks are full and it holds its `[cgnat] max_blocks_per_host`. */
export const D_PORT_BLOCK_QUOTA = DROP_BASE + 36;
/** Deterministic mode: the inside source is not in `[cgnat] inside`, so it has no port range. */
export const D_NOT_DETERMINISTIC = DROP_BASE + 37;
/** Several workers: a fragment for another worker found the handoff outbox full. */
export const D_FRAGMENT_HANDOFF_FULL = DROP_BASE + 38;
export const DROP_LAST = D_FRAGMENT_HANDOFF_FULL;

// Policy refusals (src/policy): allocated from the top of the drop range down, so other additions
// counting up from DROP_LAST never collide with them.
/** A firewall rule with action drop matched a new flow. */
export const D_FIREWALL_DROP = 127;
/** A firewall rule with action reject matched a new flow (a TCP RST or ICMP unreachable was sent). */
export const D_FIREWALL_REJECT = 126;
/** The inside host exceeded its new-flows-per-second limit. */
export const D_HOST_RATE_LIMIT = 125;
/** The gateway-wide new-flows-per-second limit was exceeded. */
export const D_RATE_LIMIT = 124;
/**
 * Interface mode: the outside interface has no address (PPP not dialled, DHCP lost), so a packet
 * for the Internet cannot be translated; it is never sent untranslated (src/nat/public-address.ts).
 */
export const D_NO_PUBLIC_ADDRESS = 120;

/** Drop reasons are DROP_BASE+1..DROP_END-1. */
export const DROP_END = 128;

// More events, after the drop reasons (0..DROP_BASE-1 is full).
export const EVENTS2_BASE = DROP_END;
/** Inbound half-open TCP flows evicted (oldest first) to make room under a SYN flood. */
export const C_HALF_OPEN_EVICTED = EVENTS2_BASE;
/** TCP three-way handshakes completed (SYN, SYN-ACK, then the ACK of the SYN-ACK). */
export const C_TCP_HANDSHAKES = EVENTS2_BASE + 1;
/** ICMP host-unreachable or TCP RST answers to inside hosts whose new flow found no port. */
export const C_EXHAUSTION_REPLIES = EVENTS2_BASE + 2;
/** ICMP port unreachable sent 6 s after an unsolicited inbound SYN (RFC 5382 REQ-4, when on). */
export const C_UNSOLICITED_SYN_REPLIES = EVENTS2_BASE + 3;
/** Unsolicited SYNs left unanswered because the inside host sent its own SYN (simultaneous open). */
export const C_UNSOLICITED_SYN_SIMULTANEOUS = EVENTS2_BASE + 4;
/** Unsolicited SYNs left unanswered: the bounded table had no room (or IP options). */
export const C_UNSOLICITED_SYN_UNANSWERED = EVENTS2_BASE + 5;
/**
 * New TCP connections given the outside port of a mapping whose connections had all finished,
 * because no other port was to be had (src/nat/closed-mappings.ts).
 */
export const C_TCP_PORTS_REUSED = EVENTS2_BASE + 6;
/**
 * ICMP errors the gateway's own stack sent about packets masq translated (fragmentation needed
 * on a smaller WAN, host unreachable), translated back to the inside host (also counted in
 * icmp_errors_translated).
 */
export const C_GATEWAY_ICMP_ERRORS = EVENTS2_BASE + 7;
/** SYNs and SYN-ACKs whose MSS option was lowered to what the next link carries (mss-clamp.ts). */
export const C_MSS_CLAMPED = EVENTS2_BASE + 8;
/**
 * Several workers: fragments from outside handed to the worker that holds their datagram's flow
 * (fragment-handoff.ts); that worker counts them again as it translates them.
 */
export const C_FRAGMENTS_HANDED_OFF = EVENTS2_BASE + 9;
/** Several workers: hairpinned packets whose inbound half is another worker's (its mapping's). */
export const C_HAIRPIN_HANDED_OFF = EVENTS2_BASE + 10;
// The public address that changes (interface mode, src/nat/public-address.ts).
/** Times the public address changed to another one. */
export const C_ADDRESS_CHANGES = EVENTS2_BASE + 20;
/** Flows on the old address dropped when it changed. */
export const C_ADDRESS_FLOWS_DROPPED = EVENTS2_BASE + 21;
/** TCP resets sent to inside hosts for their connections on the old address (RFC 6886 §3.4). */
export const C_ADDRESS_RESETS = EVENTS2_BASE + 22;

/** Events use 0..DROP_BASE-1 and EVENTS2_BASE..COUNTER_SLOTS-1, drop reasons the range between. */
export const COUNTER_SLOTS = 192;

const EVENT_NAMES: Record<number, string> = {
  [C_PACKETS]: "packets",
  [C_TRANSLATED_OUT]: "translated_out",
  [C_TRANSLATED_IN]: "translated_in",
  [C_HAIRPINNED]: "hairpinned",
  [C_PASSTHROUGH]: "passthrough",
  [C_REPLIES]: "replies_generated",
  [C_FLOWS_CREATED]: "flows_created",
  [C_FLOWS_EXPIRED]: "flows_expired",
  [C_MAPPINGS_CREATED]: "mappings_created",
  [C_MAPPINGS_EXPIRED]: "mappings_expired",
  [C_ICMP_ERRORS_TRANSLATED]: "icmp_errors_translated",
  [C_FRAGMENTS_TRANSLATED]: "fragments_translated",
  [C_FRAGMENTS_HELD]: "fragments_held",
  [C_FRAGMENTS_RELEASED]: "fragments_released",
  [C_PORTS_PRESERVED]: "ports_preserved",
  [C_BYTES_OUT]: "bytes_out",
  [C_BYTES_IN]: "bytes_in",
  [C_DROPPED]: "dropped",
  [C_PINS_CREATED]: "pins_created",
  [C_PINS_EXPIRED]: "pins_expired",
  [C_ALG_REWRITES]: "alg_rewrites",
  [C_ALG_EXPECTATIONS]: "alg_expectations",
  [C_ALG_EXPECT_REFUSED]: "alg_expectations_refused",
  [C_ALG_RESIZED]: "alg_segments_resized",
  [C_ALG_LINES_HELD]: "alg_lines_held",
  [C_ALG_MALFORMED]: "alg_malformed",
  [C_ALG_OVERSIZED]: "alg_oversized",
  [C_ALG_FOREIGN_ADDRESS]: "alg_foreign_address",
  [C_ALG_SEGMENTS_CUT]: "alg_segments_cut",
  [C_ALG_REPLAYED]: "alg_replayed",
  [C_ALG_ERRORS]: "alg_errors",
  [C_HALF_OPEN_EVICTED]: "half_open_evicted",
  [C_TCP_HANDSHAKES]: "tcp_handshakes_completed",
  [C_EXHAUSTION_REPLIES]: "exhaustion_replies",
  [C_UNSOLICITED_SYN_REPLIES]: "unsolicited_syn_replies",
  [C_UNSOLICITED_SYN_SIMULTANEOUS]: "unsolicited_syn_simultaneous_opens",
  [C_UNSOLICITED_SYN_UNANSWERED]: "unsolicited_syn_unanswered",
  [C_TCP_PORTS_REUSED]: "tcp_ports_reused",
  [C_GATEWAY_ICMP_ERRORS]: "gateway_icmp_errors_translated",
  [C_MSS_CLAMPED]: "mss_clamped",
  [C_FRAGMENTS_HANDED_OFF]: "fragments_handed_off",
  [C_HAIRPIN_HANDED_OFF]: "hairpin_handed_off",
  [C_ADDRESS_CHANGES]: "public_address_changes",
  [C_ADDRESS_FLOWS_DROPPED]: "public_address_flows_dropped",
  [C_ADDRESS_RESETS]: "public_address_resets",
};

const DROP_NAMES: Record<number, string> = {
  [D_UNSUPPORTED_PROTOCOL]: "unsupported_protocol",
  [D_NO_MAPPING]: "no_mapping",
  [D_FILTERED]: "filtered",
  [D_FLOW_TABLE_FULL]: "flow_table_full",
  [D_MAPPING_TABLE_FULL]: "mapping_table_full",
  [D_HOST_FLOW_LIMIT]: "host_flow_limit",
  [D_HOST_TABLE_FULL]: "host_table_full",
  [D_PORTS_EXHAUSTED]: "ports_exhausted",
  [D_TCP_NO_FLOW]: "tcp_no_flow",
  [D_ICMP_UNSUPPORTED]: "icmp_unsupported",
  [D_ICMP_ERROR_NO_FLOW]: "icmp_error_no_flow",
  [D_ICMP_ERROR_MALFORMED]: "icmp_error_malformed",
  [D_FRAGMENT_BUFFER_FULL]: "fragment_buffer_full",
  [D_FRAGMENT_TIMEOUT]: "fragment_timeout",
  [D_TTL_EXCEEDED]: "ttl_exceeded",
  [D_NOT_OURS]: "not_ours",
  [D_BAD_ADDRESS]: "bad_address",
  [D_ENGINE_ERROR]: "engine_error",
  [D_FRAGMENT_OF_DROPPED]: "fragment_of_dropped",
  [D_SPOOFED_SOURCE]: "spoofed_source",
  [D_INSIDE_SOURCE_FROM_OUTSIDE]: "inside_source_from_outside",
  [D_INSIDE_ADDRESS_FROM_OUTSIDE]: "inside_address_from_outside",
  [D_TCP_RST_OUT_OF_WINDOW]: "tcp_rst_out_of_window",
  [D_HALF_OPEN_LIMIT]: "half_open_limit",
  [D_HOST_PORT_QUOTA]: "host_port_quota",
  [D_FRAGMENT_SOURCE_BUDGET]: "fragment_source_budget",
  [D_PROTOCOL_REMOTE_TAKEN]: "protocol_remote_taken",
  [D_PORT_BLOCK_QUOTA]: "port_block_quota",
  [D_NOT_DETERMINISTIC]: "not_deterministic",
  [D_FRAGMENT_HANDOFF_FULL]: "fragment_handoff_full",
  [D_FIREWALL_DROP]: "firewall_drop",
  [D_FIREWALL_REJECT]: "firewall_reject",
  [D_HOST_RATE_LIMIT]: "host_rate_limit",
  [D_RATE_LIMIT]: "rate_limit",
  [D_NO_PUBLIC_ADDRESS]: "no_public_address",
};
for (let e = 1; e < PACKET_ERROR_NAMES.length; e++) DROP_NAMES[DROP_BASE + e] = PACKET_ERROR_NAMES[e];

/** The name of a drop reason code ("drop_no_mapping" style names are built by the caller). */
export function dropReasonName(code: number): string {
  return DROP_NAMES[code] ?? `reason_${code}`;
}

export function isDropReason(code: number): boolean {
  return code > DROP_BASE && code < DROP_END && DROP_NAMES[code] !== undefined;
}

/** All counters by name: events as they are, drops as drop_<reason> (every reason, zero or not). */
export function namedCounters(c: Float64Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, name] of Object.entries(EVENT_NAMES)) out[name] = c[Number(k)];
  // Every named reason, also those allocated from the top of the range down (policy).
  for (let d = DROP_BASE + 1; d < DROP_END; d++)
    if (DROP_NAMES[d] !== undefined) out[`drop_${dropReasonName(d)}`] = c[d];
  return out;
}
