// The rows of `masq conns`, written from a flow's fields straight into a ByteWriter: as JSON
// (one object per line, the same text JSON.stringify makes of the engine's FlowView) or as a
// row of the text table. The table's columns have fixed widths, wide enough for any
// address:port and state, so a row can be written the moment its flow is read; a cell that is
// longer still (a huge counter) pushes the rest of its row out.
import { STATE_NAMES } from "../nat/flow-table.ts";
import type { FlowFields } from "../nat/view.ts";
import type { ByteWriter } from "./byte-writer.ts";

const COLON = 0x3a;
const SLASH = 0x2f;
const QUOTE = 0x22;
const SPACE = 0x20;
const NEWLINE = 0x0a;
const SECONDS = 0x73; // "s"

const ENDPOINT = "255.255.255.255:65535".length;
const COLUMNS: ReadonlyArray<readonly [string, number]> = [
  ["PROTO", "PROTO".length],
  ["INSIDE", ENDPOINT],
  ["OUTSIDE", ENDPOINT],
  ["REMOTE", ENDPOINT],
  ["STATE", Math.max(...STATE_NAMES.map((n) => n.length))],
  ["ORIGIN", "outbound".length],
  ["IDLE", "604800s".length],
  ["EXPIRES", "604800s".length],
  ["PKTS OUT/IN", "PKTS OUT/IN".length],
  ["BYTES OUT/IN", 0],
];
const WIDTH = COLUMNS.map(([, w]) => w);

/** The header line of the table. */
export function writeHeader(w: ByteWriter): void {
  for (let i = 0; i < COLUMNS.length; i++) {
    const start = w.length;
    w.text(COLUMNS[i][0]);
    if (i < COLUMNS.length - 1) endCell(w, start, i);
  }
  w.byte(NEWLINE);
}

/** One flow as a row of the table. */
export function writeRow(w: ByteWriter, x: FlowFields): void {
  nameCell(w, 0, x.protocol);
  endpointCell(w, 1, x.inAddr, x.inPort);
  endpointCell(w, 2, x.outAddr, x.outPort);
  endpointCell(w, 3, x.remAddr, x.remPort);
  nameCell(w, 4, x.state);
  nameCell(w, 5, x.origin);
  secondsCell(w, 6, x.idleSec);
  secondsCell(w, 7, x.expiresInSec);
  const start = w.length;
  pair(w, x.packetsOut, x.packetsIn);
  endCell(w, start, 8);
  pair(w, x.bytesOut, x.bytesIn);
  w.byte(NEWLINE);
}

function nameCell(w: ByteWriter, column: number, s: string): void {
  const start = w.length;
  w.name(s);
  endCell(w, start, column);
}

function endpointCell(w: ByteWriter, column: number, addr: number, port: number): void {
  const start = w.length;
  w.ipv4(addr);
  w.byte(COLON);
  w.uint(port);
  endCell(w, start, column);
}

function secondsCell(w: ByteWriter, column: number, n: number): void {
  const start = w.length;
  w.uint(n);
  w.byte(SECONDS);
  endCell(w, start, column);
}

const K_PROTOCOL = Buffer.from('{"protocol":"');
const K_INSIDE = Buffer.from('","inside":{"addr":"');
const K_OUTSIDE = Buffer.from('},"outside":{"addr":"');
const K_REMOTE = Buffer.from('},"remote":{"addr":"');
const K_PORT = Buffer.from('","port":');
const K_STATE = Buffer.from('},"state":');
const K_ORIGIN = Buffer.from(',"origin":');
const K_IDLE = Buffer.from(',"idleSec":');
const K_EXPIRES = Buffer.from(',"expiresInSec":');
const K_PKTS_OUT = Buffer.from(',"packetsOut":');
const K_PKTS_IN = Buffer.from(',"packetsIn":');
const K_BYTES_OUT = Buffer.from(',"bytesOut":');
const K_BYTES_IN = Buffer.from(',"bytesIn":');

/** One flow as a JSON object (no newline), with FlowView's keys in FlowView's order. */
export function writeJson(w: ByteWriter, x: FlowFields): void {
  w.bytes(K_PROTOCOL);
  w.name(x.protocol);
  jsonEndpoint(w, K_INSIDE, x.inAddr, x.inPort);
  jsonEndpoint(w, K_OUTSIDE, x.outAddr, x.outPort);
  jsonEndpoint(w, K_REMOTE, x.remAddr, x.remPort);
  w.bytes(K_STATE);
  jsonString(w, x.state);
  w.bytes(K_ORIGIN);
  jsonString(w, x.origin);
  jsonNumber(w, K_IDLE, x.idleSec);
  jsonNumber(w, K_EXPIRES, x.expiresInSec);
  jsonNumber(w, K_PKTS_OUT, x.packetsOut);
  jsonNumber(w, K_PKTS_IN, x.packetsIn);
  jsonNumber(w, K_BYTES_OUT, x.bytesOut);
  jsonNumber(w, K_BYTES_IN, x.bytesIn);
  w.byte(0x7d);
}

/** `key` (it opens the endpoint object and its address string), the address, then the port. */
function jsonEndpoint(w: ByteWriter, key: Uint8Array, addr: number, port: number): void {
  w.bytes(key);
  w.ipv4(addr);
  w.bytes(K_PORT);
  w.uint(port);
}

function jsonNumber(w: ByteWriter, key: Uint8Array, n: number): void {
  w.bytes(key);
  w.uint(n);
}

/** The last line of the table: how many were shown, matched the filters, are in the table. */
export function connsFooter(shown: number, matched: number, total: number): string {
  if (shown === 0 && matched === 0) return `no connections (${total} in the table)`;
  if (matched === total && shown === total) return `${total} connection${total === 1 ? "" : "s"}`;
  if (matched === total) return `showing ${shown} of ${total} connections (most recently active first)`;
  return `showing ${shown} of ${matched} matching connections (${total} in the table)`;
}

function endCell(w: ByteWriter, start: number, column: number): void {
  w.padTo(start, WIDTH[column]);
  w.byte(SPACE);
  w.byte(SPACE);
}

function pair(w: ByteWriter, a: number, b: number): void {
  w.uint(a);
  w.byte(SLASH);
  w.uint(b);
}

/** Names made by the engine need no escaping; anything else goes through JSON.stringify. */
const PLAIN = /^[A-Za-z0-9 ._-]*$/;

function jsonString(w: ByteWriter, s: string): void {
  if (!PLAIN.test(s)) {
    w.text(JSON.stringify(s));
    return;
  }
  w.byte(QUOTE);
  w.name(s);
  w.byte(QUOTE);
}
