// An image of the engine's state for `masq stop --keep-state` (src/nat/snapshot.ts): every typed
// array reachable from the roots as it is in memory (the tables are struct-of-arrays, so a table
// is a handful of arrays, copied whole, never flow by flow), every number, boolean and string
// field, and the few JS collections (the pins, the ALGs' per-flow records) serialized together
// so that an object both hold stays one object.
//
// Restoring walks a freshly built engine of the same code and configuration the same way: the
// same fields in the same order, so each array, field and collection is found by its path, and
// an image that does not fit (a path missing on either side, an array of another length) is
// refused before anything is written. Fields named in `skip` (configuration, scratch buffers,
// what is dropped) are left as the fresh engine made them.
import { deserialize, serialize } from "node:v8";

type TypedArray =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | Int32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Float32Array
  | Uint8ClampedArray;

/** An array's bytes as a file holds them (decoded only into their place: one copy). */
export interface ArrayContent {
  readonly byteLength: number;
  copyTo(target: Uint8Array): void;
}

export interface StateImage<A extends Uint8Array | ArrayContent = Uint8Array | ArrayContent> {
  /** path -> the array's bytes (at capture: views of the live memory, not copies). */
  arrays: Map<string, A>;
  /**
   * Per array path, how many leading bytes may hold data; the rest is known to be zero and is
   * not read (a table's never-used records: reading them would fault in every page).
   */
  extents?: Map<string, number>;
  /** Scalars and collections, serialized with v8 (one call, so shared objects stay shared). */
  values: Uint8Array;
}

export interface WalkOptions {
  /** Field names (or full paths "root.a.b") left out of the image. */
  skip: ReadonlySet<string>;
  /**
   * Classes whose instances may appear inside collections (restored with their prototype);
   * an instance of any other class there is refused at capture.
   */
  classes: Readonly<Record<string, new (...args: never[]) => object>>;
  /** At capture: the bytes of the array at `path` that may hold data (see StateImage.extents). */
  extent?: (path: string, byteLength: number) => number | undefined;
}

/** The image does not fit the engine it is restored into (another layout). */
export class ImageMismatch extends Error {
  override name = "ImageMismatch";
}

interface Leaf {
  path: string;
  owner: Record<string, unknown>;
  key: string;
  kind: "array" | "scalar" | "collection";
}

/** Every leaf reachable from `roots`, in a fixed order (field order is constructor order). */
function leaves(roots: Record<string, object>, opts: WalkOptions): Leaf[] {
  const out: Leaf[] = [];
  const seen = new Set<object>();
  const seenBuffers = new Set<string>();
  const bufferIds = new Map<ArrayBufferLike, number>();
  const visit = (obj: Record<string, unknown>, path: string) => {
    if (seen.has(obj)) return;
    seen.add(obj);
    for (const key of Object.keys(obj)) {
      const full = `${path}.${key}`;
      if (opts.skip.has(key) || opts.skip.has(full)) continue;
      const v = obj[key];
      if (typeof v === "function" || v === undefined) continue;
      if (v === null || typeof v !== "object") {
        out.push({ path: full, owner: obj, key, kind: "scalar" });
      } else if (ArrayBuffer.isView(v)) {
        // Two views of one buffer (a table's u32 and f64 words) are one array in the image.
        let id = bufferIds.get(v.buffer);
        if (id === undefined) {
          id = bufferIds.size;
          bufferIds.set(v.buffer, id);
        }
        const range = `${id}:${v.byteOffset}:${v.byteLength}`;
        if (seenBuffers.has(range)) continue;
        seenBuffers.add(range);
        out.push({ path: full, owner: obj, key, kind: "array" });
      } else if (v instanceof Map || v instanceof Set || Array.isArray(v)) {
        out.push({ path: full, owner: obj, key, kind: "collection" });
      } else {
        visit(v as Record<string, unknown>, full);
      }
    }
  };
  for (const [name, root] of Object.entries(roots)) visit(root as Record<string, unknown>, name);
  return out;
}

/**
 * What the image of `roots` is made of, one line per leaf: "path:Uint32Array[1024]" (an array's
 * element type and length), "path:number" (a scalar's type), "path:Map" (a collection's kind).
 * The lengths follow the configuration, so shapes compare only between engines of one
 * configuration (src/control/state-layout.ts builds one of its own for that).
 */
export function imageShape(roots: Record<string, object>, opts: WalkOptions): string[] {
  return leaves(roots, opts).map((leaf) => {
    const v = leaf.owner[leaf.key] as object | null;
    if (leaf.kind === "array") {
      const a = v as TypedArray;
      return `${leaf.path}:${a.constructor.name}[${a.length}]`;
    }
    const kind = leaf.kind === "collection" ? (v as object).constructor.name : v === null ? "null" : typeof v;
    return `${leaf.path}:${kind}`;
  });
}

function bytesOf(v: TypedArray): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** The class instances inside a collection's values, with the name of each one's class. */
function classInstances(value: unknown, opts: WalkOptions, path: string): Array<[object, string]> {
  const found: Array<[object, string]> = [];
  const seen = new Set<object>();
  const known = new Set(Object.values(opts.classes).map((c) => c.prototype as object));
  const walk = (v: unknown) => {
    if (v === null || typeof v !== "object" || seen.has(v) || ArrayBuffer.isView(v)) return;
    seen.add(v);
    if (v instanceof Map) {
      for (const [k, x] of v) {
        walk(k);
        walk(x);
      }
      return;
    }
    if (v instanceof Set || Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    const proto = Object.getPrototypeOf(v) as object | null;
    if (proto !== Object.prototype && proto !== null) {
      if (!known.has(proto))
        throw new ImageMismatch(`${path}: an object of class ${v.constructor.name} cannot be kept`);
      found.push([v, v.constructor.name]);
    }
    for (const x of Object.values(v)) walk(x);
  };
  walk(value);
  return found;
}

/** Captures the state reachable from `roots`: arrays by reference, the rest serialized. */
export function captureImage(roots: Record<string, object>, opts: WalkOptions): StateImage<Uint8Array> {
  const arrays = new Map<string, Uint8Array>();
  const extents = new Map<string, number>();
  const scalars: Record<string, unknown> = {};
  const collections: Record<string, unknown> = {};
  const protos: Array<[object, string]> = [];
  for (const leaf of leaves(roots, opts)) {
    const v = leaf.owner[leaf.key];
    if (leaf.kind === "array") {
      const bytes = bytesOf(v as TypedArray);
      arrays.set(leaf.path, bytes);
      const used = opts.extent?.(leaf.path, bytes.byteLength);
      if (used !== undefined) extents.set(leaf.path, Math.min(used, bytes.byteLength));
    } else if (leaf.kind === "scalar") scalars[leaf.path] = v;
    else {
      collections[leaf.path] = v;
      protos.push(...classInstances(v, opts, leaf.path));
    }
  }
  return { arrays, extents, values: serialize({ scalars, collections, protos }) };
}

/**
 * Writes the image into the state reachable from `roots` (a fresh engine of the same code and
 * configuration). Everything is checked before the first byte is written: on an ImageMismatch
 * the engine is as it was.
 */
export function restoreImage(roots: Record<string, object>, image: StateImage, opts: WalkOptions): void {
  let values: {
    scalars: Record<string, unknown>;
    collections: Record<string, unknown>;
    protos: Array<[object, string]>;
  };
  try {
    values = deserialize(image.values);
  } catch (err) {
    throw new ImageMismatch(`the image's values cannot be read: ${(err as Error).message}`);
  }
  const all = leaves(roots, opts);
  const expected = new Set(all.map((l) => l.path));
  const extra = [
    ...image.arrays.keys(),
    ...Object.keys(values.scalars),
    ...Object.keys(values.collections),
  ].find((p) => !expected.has(p));
  if (extra !== undefined) throw new ImageMismatch(`the image has ${extra}, which this engine has not`);
  for (const leaf of all) {
    const v = leaf.owner[leaf.key];
    if (leaf.kind === "array") {
      const bytes = image.arrays.get(leaf.path);
      if (!bytes) throw new ImageMismatch(`the image has no ${leaf.path}`);
      if (bytes.byteLength !== (v as TypedArray).byteLength)
        throw new ImageMismatch(
          `${leaf.path}: ${bytes.byteLength} bytes in the image, ${(v as TypedArray).byteLength} here`,
        );
    } else if (leaf.kind === "scalar") {
      if (!(leaf.path in values.scalars)) throw new ImageMismatch(`the image has no ${leaf.path}`);
      const kept = values.scalars[leaf.path];
      if (kept !== null && v !== null && typeof kept !== typeof v)
        throw new ImageMismatch(`${leaf.path}: a ${typeof kept} in the image, a ${typeof v} here`);
    } else if (!(leaf.path in values.collections)) throw new ImageMismatch(`the image has no ${leaf.path}`);
  }
  const classes = new Map(Object.entries(opts.classes));
  for (const [obj, name] of values.protos) {
    const c = classes.get(name);
    if (!c) throw new ImageMismatch(`the image holds an object of unknown class ${name}`);
    Object.setPrototypeOf(obj, c.prototype);
  }
  for (const leaf of all) {
    const v = leaf.owner[leaf.key];
    if (leaf.kind === "array") {
      const src = image.arrays.get(leaf.path) as Uint8Array | ArrayContent;
      if (src instanceof Uint8Array) bytesOf(v as TypedArray).set(src);
      else src.copyTo(bytesOf(v as TypedArray));
    } else if (leaf.kind === "scalar") leaf.owner[leaf.key] = values.scalars[leaf.path];
    else refill(leaf.owner, leaf.key, v, values.collections[leaf.path]);
  }
}

/** Puts a collection's kept contents into the live one (others may hold a reference to it). */
function refill(owner: Record<string, unknown>, key: string, live: unknown, kept: unknown): void {
  if (live instanceof Map && kept instanceof Map) {
    live.clear();
    for (const [k, v] of kept) live.set(k, v);
  } else if (live instanceof Set && kept instanceof Set) {
    live.clear();
    for (const v of kept) live.add(v);
  } else if (Array.isArray(live) && Array.isArray(kept)) {
    live.splice(0, live.length, ...kept);
  } else owner[key] = kept;
}
