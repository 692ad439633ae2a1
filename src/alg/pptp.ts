// PPTP (RFC 2637) for inside clients (PNS) calling a server (PAC) outside. The control connection
// (TCP 1723) sets up calls; each call's data is enhanced GRE (version 1) whose key is the
// receiver's call id (§4.1). Address-only NAT lets one inside host at a time talk GRE to a server;
// with this ALG each call gets a GRE flow of its own, keyed by call ids (src/nat/generic-flow.ts),
// and the inside host's call id is replaced in the control messages by one unique on the public
// address towards that server, so several inside hosts can call the same server at once, even
// with the same call id. As netfilter's nf_nat_pptp: the PNS's call id is rewritten in what the
// client sends (Outgoing-Call-Request, Incoming-Call-Reply, Call-Clear-Request) and the peer's call
// id back in what the server sends (Outgoing-Call-Reply, Incoming-Call-Connected, WAN-Error-Notify,
// Set-Link-Info, and Call-Disconnect-Notify's call id when it is ours); the GRE key is translated
// by the flow both ways. Every rewrite keeps the length. A message must lie whole in its segment
// (as netfilter requires); a truncated or malformed one ends the look at that segment, counted.
import * as C from "../nat/counters.ts";
import type { AlgContext, TcpMessageAlg } from "./types.ts";

/** RFC 2637 §2: every control message carries this magic cookie. */
export const PPTP_MAGIC = 0x1a2b3c4d;
/** PPTP Message Type 1: a control message (2: management). */
const CONTROL_MESSAGE = 1;
/** The header: length, message type, magic cookie, control message type, reserved. */
export const PPTP_HEADER = 12;

/** Control Message Types (RFC 2637 §2). */
export const OUTGOING_CALL_REQUEST = 7;
export const OUTGOING_CALL_REPLY = 8;
export const INCOMING_CALL_REQUEST = 9;
export const INCOMING_CALL_REPLY = 10;
export const INCOMING_CALL_CONNECTED = 11;
export const CALL_CLEAR_REQUEST = 12;
export const CALL_DISCONNECT_NOTIFY = 13;
export const WAN_ERROR_NOTIFY = 14;
export const SET_LINK_INFO = 15;

/** Calls remembered per control connection; the oldest is forgotten beyond (its flow times out). */
const MAX_CALLS = 16;

interface Call {
  /** The inside host's own call id, and the one the server knows it by. */
  inCallId: number;
  outCallId: number;
  /** Its GRE flow. */
  flow: number;
}

interface PptpState {
  calls: Call[];
}

const u16 = (b: Uint8Array, at: number) => (b[at] << 8) | b[at + 1];

export const pptpAlg: TcpMessageAlg<"pptp"> = {
  name: "pptp",
  transport: "tcp",
  framing: "messages",
  defaultPorts: [1723],
  // Each call is a GRE flow of its own, made for the control connection's two ends.
  expectation: { transport: "gre", from: "remote", maxPerFlow: MAX_CALLS },
  counters: ["rewrites", "expectations", "expectations_refused", "malformed", "errors"],
  segment(ctx, buf, s, e, outbound) {
    for (let p = s; p < e; ) {
      if (e - p < PPTP_HEADER) {
        malformed(ctx);
        return;
      }
      const len = u16(buf, p);
      if (len < PPTP_HEADER || p + len > e) {
        malformed(ctx);
        return;
      }
      const magic = ((buf[p + 4] << 24) | (buf[p + 5] << 16) | (buf[p + 6] << 8) | buf[p + 7]) >>> 0;
      if (magic !== PPTP_MAGIC) {
        malformed(ctx);
        return;
      }
      if (u16(buf, p + 2) === CONTROL_MESSAGE) {
        const type = u16(buf, p + 8);
        if (outbound) fromClient(ctx, buf, p, len, type);
        else fromServer(ctx, buf, p, len, type);
      }
      p += len;
    }
  },
};

function malformed(ctx: AlgContext): void {
  ctx.count(C.C_ALG_MALFORMED);
}

function stateOf(ctx: AlgContext): PptpState {
  let st = ctx.state as PptpState | undefined;
  if (st === undefined) {
    st = { calls: [] };
    ctx.state = st;
  }
  return st;
}

/** A message from the inside client (PNS) of `len` bytes at `p`. */
function fromClient(ctx: AlgContext, b: Uint8Array, p: number, len: number, type: number): void {
  if (type !== OUTGOING_CALL_REQUEST && type !== INCOMING_CALL_REPLY && type !== CALL_CLEAR_REQUEST) return;
  // Each of them carries the client's Call ID first (§2.7, §2.10, §2.12).
  if (len < PPTP_HEADER + 4) {
    malformed(ctx);
    return;
  }
  const at = p + PPTP_HEADER;
  const inCallId = u16(b, at);
  const st = stateOf(ctx);
  let call = st.calls.find((c) => c.inCallId === inCallId && ctx.isGreCall(c.flow, c.outCallId));
  if (call === undefined) {
    if (type === CALL_CLEAR_REQUEST) return;
    // An incoming call's reply names the server's call id (Peer's Call ID) already.
    const remCallId = type === INCOMING_CALL_REPLY ? u16(b, at + 2) : 0;
    const made = ctx.greCall(inCallId, remCallId);
    if (made === null) return;
    call = { inCallId, outCallId: made.outCallId, flow: made.flow };
    st.calls = st.calls.filter((c) => c.inCallId !== inCallId);
    st.calls.push(call);
    if (st.calls.length > MAX_CALLS) st.calls.shift();
  } else if (type === INCOMING_CALL_REPLY) ctx.greCallAnswered(call.flow, u16(b, at + 2));
  if (call.outCallId !== inCallId) {
    ctx.rewrite16(at, call.outCallId);
    ctx.count(C.C_ALG_REWRITES);
  }
}

/** A message from the server (PAC) of `len` bytes at `p`. */
function fromServer(ctx: AlgContext, b: Uint8Array, p: number, len: number, type: number): void {
  // Where the client's call id (as the server knows it) sits: Peer's Call ID, after the server's
  // own Call ID in an Outgoing-Call-Reply (§2.8), first in the others (§2.11, §2.14, §2.15);
  // Call-Disconnect-Notify's Call ID (§2.13) is rewritten only when it is one of ours.
  let at: number;
  if (type === OUTGOING_CALL_REPLY) at = p + PPTP_HEADER + 2;
  else if (
    type === INCOMING_CALL_CONNECTED ||
    type === WAN_ERROR_NOTIFY ||
    type === SET_LINK_INFO ||
    type === CALL_DISCONNECT_NOTIFY
  )
    at = p + PPTP_HEADER;
  else return;
  if (at + 2 > p + len) {
    malformed(ctx);
    return;
  }
  const outCallId = u16(b, at);
  const st = ctx.state as PptpState | undefined;
  const call = st?.calls.find((c) => c.outCallId === outCallId && ctx.isGreCall(c.flow, c.outCallId));
  if (call === undefined) {
    // Not a call this connection made through us (or one forgotten): left as it is.
    if (type !== CALL_DISCONNECT_NOTIFY) malformed(ctx);
    return;
  }
  if (type === OUTGOING_CALL_REPLY) ctx.greCallAnswered(call.flow, u16(b, p + PPTP_HEADER));
  if (call.inCallId !== outCallId) {
    ctx.rewrite16(at, call.inCallId);
    ctx.count(C.C_ALG_REWRITES);
  }
}
