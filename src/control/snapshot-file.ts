// The snapshot file of `masq stop --keep-state`: the engine's state image (src/nat/snapshot.ts,
// with the ALGs' and, when it is on, the IPv6 filter's table) behind a header that says whose it is, checksummed, written atomically.
//
//   0   "MASQSNAP"                 magic
//   8   u32 format version         (SNAPSHOT_FORMAT)
//   12  u32 header length H
//   16  u32 CRC-32 of bytes 20..end (header and body: a flipped bit anywhere is found)
//   20  header, JSON (SnapshotHeader)
//   ..  body: u32 length + the image's values (v8-serialized), u32 array count, then per array
//       u16 path length + path, u32 byte length, the bitmap of its 4 KiB pages that are not all
//       zero, and those pages (so the unused part of a preallocated table costs nothing).
//
// All little-endian. Written to a temporary file in the same directory, fsynced and renamed over
// the name, the directory fsynced: a crash leaves the old file or the new one, never half of one.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { crc32 } from "node:zlib";
import type { ArrayContent, StateImage } from "../nat/snapshot.ts";
import type { Grant } from "../portmap/leases.ts";

export const SNAPSHOT_MAGIC = "MASQSNAP";
/**
 * 2: the image may hold the IPv6 filter's table (root `ip6`). 3: the header names its state
 * layout (state-layout.ts) instead of relying on the masq version, and may carry the leases.
 */
export const SNAPSHOT_FORMAT = 3;
const PAGE = 4096;
const FIXED = 20;

/** NAT-PMP, PCP and UPnP's lease table at the stop (its pins are in the image). */
export interface KeptLeases {
  /** Who holds each mapping (origin, owner, PCP nonce) and the engine pin that is the mapping. */
  grants: Grant[];
  /**
   * How far the NAT-PMP/PCP epoch had run (ms, RFC 6886 §3.6, RFC 6887 §8.5) at the engine
   * clock `clockMs`: the next run continues it, or clients would see it go back and map again.
   */
  epochMs?: number;
}

export interface SnapshotHeader {
  /** package.json's version of the masq that wrote it (logged; the layout decides). */
  masqVersion: string;
  /** The state-layout fingerprint of the masq that wrote it (state-layout.ts). */
  stateLayout: string;
  /** Hash of the configuration that decides the table layout and translation (keep-state.ts). */
  configHash: string;
  createdAt: string;
  /** CLOCK_MONOTONIC at capture (ns, decimal) and the boot it belongs to: the downtime. */
  monotonicNs: string;
  bootId: string;
  /** The engine's clock (the daemon's ms) at capture: the new run continues from it. */
  clockMs: number;
  /** The port allocators' seed (RFC 6056), kept so `masq replay --port-seed` still matches. */
  portSeed: number;
  flows: number;
  mappings: number;
  pins: number;
  leases?: KeptLeases;
}

/** A snapshot that is not taken: `reason` says why (corrupt, another version, another config …). */
export class SnapshotRefused extends Error {
  override name = "SnapshotRefused";
  readonly reason: string;
  constructor(file: string, reason: string) {
    super(`snapshot ${file} refused: ${reason}`);
    this.reason = reason;
  }
}

/** The bytes of the file, as pieces (views of the live tables: nothing is copied). */
export function encodeSnapshot(header: SnapshotHeader, image: StateImage<Uint8Array>): Uint8Array[] {
  const head = Buffer.from(JSON.stringify(header), "utf8");
  const pieces: Uint8Array[] = [Buffer.alloc(FIXED), head];
  pieces.push(u32(image.values.byteLength), image.values, u32(image.arrays.size));
  for (const [path, bytes] of image.arrays) {
    const extent = image.extents?.get(path) ?? bytes.byteLength;
    const name = Buffer.from(path, "utf8");
    const pages = Math.ceil(bytes.byteLength / PAGE);
    const bitmap = new Uint8Array(Math.ceil(pages / 8));
    const meta = Buffer.alloc(2 + name.length + 4);
    meta.writeUInt16LE(name.length, 0);
    name.copy(meta, 2);
    meta.writeUInt32LE(bytes.byteLength, 2 + name.length);
    pieces.push(meta, bitmap);
    // Runs of pages with data, each one view.
    let runStart = -1;
    for (let p = 0; p <= pages; p++) {
      const used =
        p < pages &&
        p * PAGE < extent &&
        !isZero(bytes, p * PAGE, Math.min(bytes.byteLength, (p + 1) * PAGE));
      if (used) {
        bitmap[p >>> 3] |= 1 << (p & 7);
        if (runStart < 0) runStart = p;
      } else if (runStart >= 0) {
        pieces.push(bytes.subarray(runStart * PAGE, Math.min(bytes.byteLength, p * PAGE)));
        runStart = -1;
      }
    }
  }
  const fixed = pieces[0] as Buffer;
  fixed.write(SNAPSHOT_MAGIC, 0, "latin1");
  fixed.writeUInt32LE(SNAPSHOT_FORMAT, 8);
  fixed.writeUInt32LE(head.length, 12);
  let crc = 0;
  for (let i = 1; i < pieces.length; i++) crc = crc32(pieces[i], crc);
  fixed.writeUInt32LE(crc >>> 0, 16);
  return pieces;
}

/** The header and image of a snapshot file's bytes; SnapshotRefused naming what is wrong. */
export function decodeSnapshot(
  file: string,
  data: Uint8Array,
): { header: SnapshotHeader; image: StateImage<ArrayContent> } {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const refuse = (why: string) => new SnapshotRefused(file, why);
  if (b.length < FIXED || b.toString("latin1", 0, 8) !== SNAPSHOT_MAGIC) throw refuse("not a masq snapshot");
  const format = b.readUInt32LE(8);
  if (format !== SNAPSHOT_FORMAT)
    throw refuse(
      `state layout changed (snapshot format ${format}, this masq reads format ${SNAPSHOT_FORMAT})`,
    );
  const headLen = b.readUInt32LE(12);
  if (FIXED + headLen > b.length) throw refuse("corrupt: cut short");
  if (crc32(b.subarray(FIXED)) >>> 0 !== b.readUInt32LE(16)) throw refuse("corrupt: checksum mismatch");
  let header: SnapshotHeader;
  try {
    header = JSON.parse(b.toString("utf8", FIXED, FIXED + headLen)) as SnapshotHeader;
  } catch {
    throw refuse("corrupt: the header is not JSON");
  }
  let at = FIXED + headLen;
  const need = (n: number) => {
    if (at + n > b.length) throw refuse("corrupt: cut short");
  };
  need(4);
  const valuesLen = b.readUInt32LE(at);
  at += 4;
  need(valuesLen + 4);
  const values = new Uint8Array(b.subarray(at, at + valuesLen));
  at += valuesLen;
  const count = b.readUInt32LE(at);
  at += 4;
  const arrays = new Map<string, ArrayContent>();
  for (let i = 0; i < count; i++) {
    need(2);
    const nameLen = b.readUInt16LE(at);
    need(2 + nameLen + 4);
    const path = b.toString("utf8", at + 2, at + 2 + nameLen);
    const length = b.readUInt32LE(at + 2 + nameLen);
    at += 2 + nameLen + 4;
    const pages = Math.ceil(length / PAGE);
    const bitmapLen = Math.ceil(pages / 8);
    need(bitmapLen);
    const bitmap = b.subarray(at, at + bitmapLen);
    at += bitmapLen;
    // Where each stored page is in the file; copied into its place only when restored.
    const stored: number[] = [];
    for (let p = 0; p < pages; p++) {
      if ((bitmap[p >>> 3] & (1 << (p & 7))) === 0) continue;
      const n = Math.min(length, (p + 1) * PAGE) - p * PAGE;
      need(n);
      stored.push(p, at);
      at += n;
    }
    arrays.set(path, pagedContent(b, length, stored));
  }
  if (at !== b.length) throw refuse("corrupt: bytes after the last array");
  return { header, image: { arrays, values } };
}

/** Writes the pieces to `file` atomically (temporary file, fsync, rename, fsync of the directory). */
export function writeSnapshotFile(file: string, pieces: readonly Uint8Array[]): void {
  const tmp = join(dirname(file), `.${process.pid}.snapshot.tmp`);
  const fd = openSync(tmp, "w", 0o600);
  try {
    for (const p of pieces) {
      let off = 0;
      while (off < p.byteLength) off += writeSync(fd, p, off, p.byteLength - off);
    }
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, file);
  const dir = openSync(dirname(file), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** The file's bytes, or undefined when there is none. */
export function readSnapshotFile(file: string): Uint8Array | undefined {
  try {
    return readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** An array of `length` bytes whose pages `stored` (page, file offset pairs) are in `file`, the rest zero. */
function pagedContent(file: Uint8Array, length: number, stored: readonly number[]): ArrayContent {
  return {
    byteLength: length,
    copyTo(target: Uint8Array) {
      let next = 0; // the first byte not yet written
      for (let i = 0; i < stored.length; i += 2) {
        const from = stored[i] * PAGE;
        const to = Math.min(length, from + PAGE);
        if (from > next) zero(target, next, from);
        target.set(file.subarray(stored[i + 1], stored[i + 1] + (to - from)), from);
        next = to;
      }
      if (next < length) zero(target, next, length);
    },
  };
}

function u32(n: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

const ZERO_PAGE = new Uint8Array(PAGE);

/**
 * Zeroes b[from, to), page by page, writing only the pages that are not zero already: the target
 * is a fresh engine's table, mostly zero, and a write would fault in (and the kernel clear) every
 * page of a large table that nothing uses, tens of ms in a restart's gap.
 */
function zero(b: Uint8Array, from: number, to: number): void {
  for (let at = from; at < to; ) {
    const end = Math.min(to, (Math.floor(at / PAGE) + 1) * PAGE);
    if (!isZero(b, at, end)) b.fill(0, at, end);
    at = end;
  }
}

/** Whether b[from, to) (at most a page) is all zero: a native compare, no JavaScript loop. */
function isZero(b: Uint8Array, from: number, to: number): boolean {
  return Buffer.compare(b.subarray(from, to), ZERO_PAGE.subarray(0, to - from)) === 0;
}
