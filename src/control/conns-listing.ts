// `GET /v1/conns`: the connection table as a body made in chunks (see chunked.ts), so a listing
// of 200 k flows neither stops the packet loop (same thread) nor builds one huge string. Each
// chunk works for about CHUNK_MS on the engine's listing cursor (flow-listing.ts), formats the
// flows it emits as JSON lines or text rows, and hands them to the socket.
//
// JSON (the default, `masq conns --json`): one document, one flow per line,
//   {"flows":[
//   {...},
//   {...}
//   ],"total":201001,"matched":201001,"pins":[...]}
// Text (`format=text`, `masq conns`): the table (conns-writer.ts), then the pinned mappings.
// Flows are written from their fields straight into bytes: a listing allocates per chunk, not
// per flow, so the garbage collector (whose pauses stop the packet loop too) has little to do.
import { performance } from "node:perf_hooks";
import type { FlowFilter, FlowListing } from "../nat/flow-listing.ts";
import { STATE_NAMES } from "../nat/flow-table.ts";
import { FlowFields, type PinView, PROTOCOL_NUMBERS } from "../nat/view.ts";
import { parseIpv4 } from "../packet/addr.ts";
import { ByteWriter } from "./byte-writer.ts";
import type { ChunkedBody } from "./chunked.ts";
import { connsFooter, writeHeader, writeJson, writeRow } from "./conns-writer.ts";
import { ControlError } from "./errors.ts";
import { formatPins } from "./format.ts";

export const MAX_CONNS_LIMIT = 1_000_000;

/**
 * Work per chunk. The packet loop waits while a chunk runs; 2 ms of listing between batches
 * keeps the added delay far below what a person or TCP notices (and the heap scan, sort and
 * formatting of 200 k flows still finish in well under a second of CPU).
 */
const CHUNK_MS = 2;
/** Units of listing work between clock reads (slots scanned, entries sorted or emitted). */
const STEP = 128;
/** A chunk stops early at this size, so one chunk's text stays small. */
const MAX_CHUNK_BYTES = 64 * 1024;

export interface ConnsQuery {
  format: "json" | "text";
  limit: number;
  filter: FlowFilter;
}

/** What a listing needs of the engine (NatEngine and ShardedEngine fit). */
export interface ConnsEngine {
  listFlows(filter: FlowFilter, limit: number): Pick<FlowListing, "step" | "done" | "matched">;
  readFlow(f: number, out: FlowFields): FlowFields;
  pinList(): PinView[];
  readonly flowTable: { readonly count: number };
}

const STATES = STATE_NAMES.filter((n) => n !== "?");
const PARAMS = new Set(["format", "limit", "host", "proto", "state"]);

/** The query of `GET /v1/conns`; a bad one is a ControlError 400 naming the parameter. */
export function parseConnsQuery(params: URLSearchParams): ConnsQuery {
  for (const key of params.keys())
    if (!PARAMS.has(key))
      throw new ControlError(
        "MASQ_ERR_BAD_REQUEST",
        `unknown parameter ${JSON.stringify(key)} (${[...PARAMS].join(", ")})`,
      );
  const format = params.get("format") ?? "json";
  if (format !== "json" && format !== "text")
    throw new ControlError("MASQ_ERR_BAD_REQUEST", "format must be json or text");
  const limitText = params.get("limit");
  const limit = limitText === null ? Number.POSITIVE_INFINITY : Number(limitText);
  if (limitText !== null && (!Number.isInteger(limit) || limit < 0 || limit > MAX_CONNS_LIMIT))
    throw new ControlError("MASQ_ERR_BAD_REQUEST", `limit must be an integer 0-${MAX_CONNS_LIMIT}`);
  const filter: FlowFilter = {};
  const proto = params.get("proto");
  if (proto !== null) {
    const n = Object.hasOwn(PROTOCOL_NUMBERS, proto)
      ? PROTOCOL_NUMBERS[proto]
      : /^\d{1,3}$/.test(proto)
        ? Number(proto)
        : -1;
    if (n < 1 || n > 255)
      throw new ControlError(
        "MASQ_ERR_BAD_REQUEST",
        `proto must be one of ${Object.keys(PROTOCOL_NUMBERS).join(", ")} or a protocol number 1-255 (got ${proto})`,
      );
    filter.proto = n;
  }
  const state = params.get("state");
  if (state !== null) {
    const n = STATES.indexOf(state);
    if (n < 0) throw new ControlError("MASQ_ERR_BAD_REQUEST", `state must be one of ${STATES.join(", ")}`);
    filter.state = n;
  }
  const host = params.get("host");
  if (host !== null) filter.net = parseHost(host);
  return { format, limit, filter };
}

function parseHost(text: string): { addr: number; mask: number } {
  const [addrText, lenText, extra] = text.split("/");
  const addr = parseIpv4(addrText);
  const len = lenText === undefined ? 32 : /^\d{1,2}$/.test(lenText) ? Number(lenText) : -1;
  if (addr === undefined || len < 0 || len > 32 || extra !== undefined)
    throw new ControlError(
      "MASQ_ERR_BAD_REQUEST",
      `host must be an IPv4 address or prefix like 192.168.0.0/24 (got ${text})`,
    );
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { addr: (addr & mask) >>> 0, mask };
}

/**
 * The body of one `GET /v1/conns`, made a chunk at a time. `morePins`: pinned mappings kept
 * outside the engine (the IPv6 filter's pinholes), listed after the engine's.
 */
export function connsBody(
  engine: ConnsEngine,
  q: ConnsQuery,
  morePins: () => PinView[] = () => [],
): ChunkedBody {
  const listing = engine.listFlows(q.filter, q.limit);
  const text = q.format === "text";
  // Room for a full chunk and the row that ends it, so the buffer never has to grow.
  const w = new ByteWriter(MAX_CHUNK_BYTES + 16 * 1024);
  // One record for every flow read: the listing allocates per chunk, not per flow.
  const fields = new FlowFields();
  let shown = 0;
  let finished = false;
  const emit = (f: number) => {
    engine.readFlow(f, fields);
    if (text) {
      if (shown === 0) writeHeader(w);
      writeRow(w, fields);
    } else {
      w.text(shown === 0 ? "\n" : ",\n");
      writeJson(w, fields);
    }
    shown++;
  };
  if (!text) w.text('{"flows":[');
  return {
    contentType: text ? "text/plain; charset=utf-8" : "application/json",
    next(): Uint8Array | null {
      if (finished) return null;
      const deadline = performance.now() + CHUNK_MS;
      do listing.step(STEP, emit);
      while (!listing.done && w.length < MAX_CHUNK_BYTES && performance.now() < deadline);
      if (listing.done) {
        finished = true;
        const total = engine.flowTable.count;
        const pins = [...engine.pinList(), ...morePins()];
        if (text) {
          w.text(`${connsFooter(shown, listing.matched, total)}\n`);
          if (pins.length > 0) w.text(`\n${formatPins(pins)}`);
        } else
          w.text(
            `${shown > 0 ? "\n" : ""}],"total":${total},"matched":${listing.matched},"pins":${JSON.stringify(pins)}}\n`,
          );
      }
      return w.take();
    },
    recycle: (chunk) => w.recycle(chunk),
  };
}
