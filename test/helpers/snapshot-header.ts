// A snapshot file's bytes with its header changed and re-encoded (so its checksum is right): a
// snapshot as another masq would have written it, for the keep-state tests.
import { decodeSnapshot, encodeSnapshot, type SnapshotHeader } from "../../src/control/snapshot-file.ts";

export function withHeader(bytes: Uint8Array, change: Partial<SnapshotHeader>): Buffer {
  const { header, image } = decodeSnapshot("snapshot", bytes);
  const arrays = new Map<string, Uint8Array>();
  for (const [path, content] of image.arrays) {
    const b = new Uint8Array(content.byteLength);
    content.copyTo(b);
    arrays.set(path, b);
  }
  return Buffer.concat(encodeSnapshot({ ...header, ...change }, { arrays, values: image.values }));
}
