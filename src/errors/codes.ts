// Every error masq reports has a stable code (as undici's UND_ERR_* and fastify's FST_ERR_*):
// callers, scripts and tests match on the code, never on the message, which may be reworded.
// This is the one table that says what each code means on every path that reports it: the
// control API's HTTP status, the PCP (RFC 6887 §7.4) and NAT-PMP (RFC 6886 §3.5) result codes
// when a port-mapping request fails with it, and the exit code of the `masq` command.
//
// Each code has a value in every column, so no path needs a fallback of its own; for a code that
// never reaches a protocol (MASQ_ERR_NOT_ROOT over PCP) the column holds the generic answer.
// The README's table of codes is checked against this one (test/unit/errors/codes.test.ts).

import { NatPmpResult } from "../portmap/natpmp.ts";
import { PcpResult } from "../portmap/pcp.ts";
import { UpnpError } from "../portmap/upnp/errors.ts";

/**
 * Exit codes of `masq`, by what the operator does next. 1 stays the plain failure it always was
 * (not root included), 2 the configuration error it always was.
 */
export const Exit = {
  /** Something failed that is no one input's fault: the host, a permission, a bug. */
  FAILURE: 1,
  /** The configuration, a flag or a request is wrong: fix it (the message names the key). */
  INVALID: 2,
  /** No masq answers on the control socket (not running, or stuck). */
  UNREACHABLE: 3,
  /** What was asked for does not exist (no such forward). */
  NOT_FOUND: 4,
  /** Something else holds it (a port, a socket, a mapping): free it or choose another. */
  IN_USE: 5,
  /** A table, a port range or a quota is used up: try later or raise the limit. */
  EXHAUSTED: 6,
} as const;

export interface ErrorMeaning {
  /** One line for the README's table. */
  summary: string;
  /** The control API's status for it. */
  http: number;
  /** The PCP result code a MAP that fails with it gets. */
  pcp: number;
  /** The NAT-PMP result code a mapping request that fails with it gets. */
  natpmp: number;
  /** The exit code of the `masq` command that fails with it. */
  exit: number;
}

const P = PcpResult;
const N = NatPmpResult;

/** The table. Codes are never renamed or reused; a new failure gets a new code. */
export const ERRORS = {
  // ---- configuration and requests
  MASQ_ERR_CONFIG_INVALID: {
    summary: "a config key, flag or value is wrong (the message names the key)",
    http: 400,
    pcp: P.MALFORMED_REQUEST,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_RELOAD_NEEDS_RESTART: {
    summary:
      "a reload changes a setting that only a restart can (the message names the key); nothing changed",
    http: 409,
    pcp: P.MALFORMED_REQUEST,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_BAD_REQUEST: {
    summary: "a control API request is malformed (target, query, body)",
    http: 400,
    pcp: P.MALFORMED_REQUEST,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_BODY_TOO_LARGE: {
    summary: "a control API request body is above 64 KiB",
    http: 413,
    pcp: P.MALFORMED_REQUEST,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_METHOD_NOT_ALLOWED: {
    summary: "the control API has no such method on that path",
    http: 405,
    pcp: P.UNSUPP_OPCODE,
    natpmp: N.UNSUPPORTED_OPCODE,
    exit: Exit.INVALID,
  },
  MASQ_ERR_NO_SUCH_ENDPOINT: {
    summary: "the control API has no such path",
    http: 404,
    pcp: P.UNSUPP_OPCODE,
    natpmp: N.UNSUPPORTED_OPCODE,
    exit: Exit.NOT_FOUND,
  },
  MASQ_ERR_LISTINGS_BUSY: {
    summary: "32 connection listings are in progress; try again shortly",
    http: 503,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  // ---- port forwards
  MASQ_ERR_FORWARD_INVALID: {
    summary: "a forward is not like 8080/tcp → 192.168.0.2:80 (the message names the field)",
    http: 400,
    pcp: P.MALFORMED_REQUEST,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_FORWARD_TARGET: {
    summary: "a forward's inside host is refused (the gateway itself, a broadcast address, no inside host)",
    http: 400,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_FORWARD_NOT_FOUND: {
    summary: "no forward with that id or outside port (see masq forward list)",
    http: 404,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.NOT_FOUND,
  },
  MASQ_ERR_FORWARD_STATE_CORRUPT: {
    summary: "the runtime forwards' state file is corrupt and could not be moved aside",
    http: 500,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.FAILURE,
  },
  // ---- mappings (pins: forwards, NAT-PMP/PCP, ALG expectations)
  MASQ_ERR_NOT_INSIDE: {
    summary: "the inside address is on no inside network",
    http: 400,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_NOT_PUBLIC_ADDRESS: {
    summary: "the outside address is not one of masq's public addresses",
    http: 400,
    pcp: P.CANNOT_PROVIDE_EXTERNAL,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_ALREADY_MAPPED: {
    summary: "the inside endpoint already has another outside port (RFC 4787 REQ-1: one per endpoint)",
    http: 409,
    pcp: P.CANNOT_PROVIDE_EXTERNAL,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.IN_USE,
  },
  MASQ_ERR_PORT_IN_USE: {
    summary: "the outside port is taken by another mapping",
    http: 409,
    pcp: P.CANNOT_PROVIDE_EXTERNAL,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.IN_USE,
  },
  MASQ_ERR_MAPPING_OWNED: {
    summary: "the mapping belongs to another client (another protocol, or another PCP nonce)",
    http: 409,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.IN_USE,
  },
  MASQ_ERR_SUGGESTION_UNAVAILABLE: {
    summary: "PCP PREFER_FAILURE: the suggested outside address and port cannot be given",
    http: 409,
    pcp: P.CANNOT_PROVIDE_EXTERNAL,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.IN_USE,
  },
  MASQ_ERR_PORTS_EXHAUSTED: {
    summary: "no free outside port of the protocol on that address",
    http: 503,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  MASQ_ERR_MAPPING_TABLE_FULL: {
    summary: "the mapping table is full (limits.max_flows)",
    http: 503,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  MASQ_ERR_HOST_TABLE_FULL: {
    summary: "the host table is full (limits.max_hosts)",
    http: 503,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  MASQ_ERR_TOO_MANY_PINS: {
    summary: "one mapping holds 255 pins already",
    http: 503,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  MASQ_ERR_HOST_PORT_QUOTA: {
    summary: "the inside host holds its share of the ports (limits.max_ports_per_host, RFC 6888 REQ-4)",
    http: 429,
    pcp: P.USER_EX_QUOTA,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  MASQ_ERR_PORTMAP_HOST_QUOTA: {
    summary: "the inside host holds portmap.max_per_host NAT-PMP/PCP mappings",
    http: 429,
    pcp: P.USER_EX_QUOTA,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  MASQ_ERR_PORTMAP_FULL: {
    summary: "all hosts together hold portmap.max_mappings mappings of the protocol",
    http: 503,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
  MASQ_ERR_NO_PUBLIC_ADDRESS: {
    summary: "masq has no public address to map to",
    http: 503,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.FAILURE,
  },
  // ---- starting and the host
  MASQ_ERR_NOT_ROOT: {
    summary: "masq run needs root (or CAP_NET_ADMIN)",
    http: 500,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.FAILURE,
  },
  MASQ_ERR_INTERFACE_MISSING: {
    summary: "a named interface does not exist, or has no IPv4 address masq needs",
    http: 400,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.INVALID,
  },
  MASQ_ERR_PORT_RANGE_OVERLAP: {
    summary: "interface mode: ports overlaps the kernel's net.ipv4.ip_local_port_range",
    http: 400,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.INVALID,
  },
  MASQ_ERR_SOCKET_IN_USE: {
    summary: "the control socket, NAT-PMP/PCP's UDP 5351 or UPnP's UDP 1900, is held by another process",
    http: 500,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.IN_USE,
  },
  MASQ_ERR_HOST_SETUP: {
    summary: "a route, rule or sysctl could not be changed (or undone)",
    http: 500,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.FAILURE,
  },
  MASQ_ERR_INTERNAL: {
    summary: "anything else: a bug or an unexpected system error (the message says what)",
    http: 500,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.FAILURE,
  },
  // ---- the command talking to a running masq
  MASQ_ERR_NOT_RUNNING: {
    summary: "no masq listens on the control socket (see --socket)",
    http: 503,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.UNREACHABLE,
  },
  MASQ_ERR_NO_ANSWER: {
    summary: "masq did not answer in time, or cut its answer short",
    http: 504,
    pcp: P.NETWORK_FAILURE,
    natpmp: N.NETWORK_FAILURE,
    exit: Exit.UNREACHABLE,
  },
  MASQ_ERR_SOCKET_PERMISSION: {
    summary: "the control socket is root's: run as root",
    http: 403,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.FAILURE,
  },
  MASQ_ERR_WEB_UNAUTHORIZED: {
    summary: "the web dashboard wants its token (Authorization: Bearer, or ?token= once)",
    http: 401,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.FAILURE,
  },
  MASQ_ERR_WEB_READ_ONLY: {
    summary: "the web dashboard is read-only: changes need [web] allow_changes = true",
    http: 403,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_WEB_FORBIDDEN: {
    summary: "a change from the web dashboard without its CSRF token or from another origin",
    http: 403,
    pcp: P.NOT_AUTHORIZED,
    natpmp: N.NOT_AUTHORIZED,
    exit: Exit.INVALID,
  },
  MASQ_ERR_WEB_BUSY: {
    summary: "the web dashboard has as many live clients as it serves; close one",
    http: 503,
    pcp: P.NO_RESOURCES,
    natpmp: N.OUT_OF_RESOURCES,
    exit: Exit.EXHAUSTED,
  },
} as const satisfies Record<string, ErrorMeaning>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === "string" && Object.hasOwn(ERRORS, s);
}

export function httpStatusOf(code: ErrorCode): number {
  return ERRORS[code].http;
}

export function pcpResultOf(code: ErrorCode): number {
  return ERRORS[code].pcp;
}

export function natpmpResultOf(code: ErrorCode): number {
  return ERRORS[code].natpmp;
}

export function exitCodeOf(code: ErrorCode): number {
  return ERRORS[code].exit;
}

const U = UpnpError;

/**
 * The UPnP IGD error (WANIPConnection:1/:2) an AddPortMapping that fails with a code gets: a
 * port someone else holds is a conflict (718), one held by another protocol's client a conflict
 * with another mechanism (729), a quota or a full table no port maps available (728), a host
 * that may not map forbidden (606); anything else the generic Action Failed (501).
 */
const UPNP_ERRORS: { readonly [K in ErrorCode]?: number } = {
  MASQ_ERR_NOT_INSIDE: U.ACTION_NOT_AUTHORIZED,
  MASQ_ERR_FORWARD_TARGET: U.ACTION_NOT_AUTHORIZED,
  MASQ_ERR_NOT_PUBLIC_ADDRESS: U.ACTION_NOT_AUTHORIZED,
  MASQ_ERR_ALREADY_MAPPED: U.CONFLICT_IN_MAPPING_ENTRY,
  MASQ_ERR_PORT_IN_USE: U.CONFLICT_IN_MAPPING_ENTRY,
  MASQ_ERR_SUGGESTION_UNAVAILABLE: U.CONFLICT_IN_MAPPING_ENTRY,
  MASQ_ERR_MAPPING_OWNED: U.CONFLICT_WITH_OTHER_MECHANISMS,
  MASQ_ERR_PORTS_EXHAUSTED: U.NO_PORT_MAPS_AVAILABLE,
  MASQ_ERR_MAPPING_TABLE_FULL: U.NO_PORT_MAPS_AVAILABLE,
  MASQ_ERR_HOST_TABLE_FULL: U.NO_PORT_MAPS_AVAILABLE,
  MASQ_ERR_TOO_MANY_PINS: U.NO_PORT_MAPS_AVAILABLE,
  MASQ_ERR_HOST_PORT_QUOTA: U.NO_PORT_MAPS_AVAILABLE,
  MASQ_ERR_PORTMAP_HOST_QUOTA: U.NO_PORT_MAPS_AVAILABLE,
  MASQ_ERR_PORTMAP_FULL: U.NO_PORT_MAPS_AVAILABLE,
};

export function upnpErrorOf(code: ErrorCode): number {
  return UPNP_ERRORS[code] ?? U.ACTION_FAILED;
}
