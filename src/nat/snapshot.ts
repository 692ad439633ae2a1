// What of the engine's state a snapshot keeps (`masq stop --keep-state`, then `masq run`): the
// tables as they are in memory (flows, mappings, the hash indices and their seeds, TCP tracking,
// the timer wheel with its cursor, hosts, port quotas and bitmaps with the allocators' random
// state, half-open queue, finished mappings, pins, firewall hits), the counters and the clock.
// Left out, as the fresh engine of the new run makes them: the configuration and what is derived
// from it (addresses, timeouts, the MSS clamp's MTUs, which the new run reads from the host),
// scratch buffers, the prefetch state, and the fragments: held fragments and the outcomes of
// first fragments last seconds, and a datagram whose fragments straddle the restart is lost as
// the fragments dropped while masq was down are.
import type { EngineState } from "./state.ts";
import { captureImage, imageShape, restoreImage, type StateImage, type WalkOptions } from "./state-image.ts";

export { type ArrayContent, ImageMismatch, type StateImage } from "./state-image.ts";

/** State of the layers above the engine that lives with its flows (the ALGs', src/alg/snapshot.ts). */
export interface ImageParts {
  roots: Record<string, object>;
  skip: readonly string[];
  classes: WalkOptions["classes"];
}

/** Fields of EngineState (and of the objects below it) that a snapshot leaves out. */
const ENGINE_SKIP = [
  // The configuration and what the constructor derives from it, the new run's own.
  "config",
  "outside",
  "outsideIndexOf",
  "outsideMin",
  "outsideMax",
  "insideAddr",
  "insideMask",
  "gateway",
  "hopAddress",
  "filtering",
  "interfaceMode",
  "ttlMode",
  "maxHalfOpen",
  "hostRate",
  "mss",
  // Scratch and per-batch state.
  "replyBuf",
  "embedded",
  "prefetchHashes",
  "prefetchSides",
  "prefetchFlows",
  "prefetchOffs",
  "prefetchBuf",
  "prefetchCount",
  "prefetchNext",
  "candidate",
  "prefetchSink",
  "outLen",
  "lastDrop",
  "releaseSrc",
  "releaseDst",
  // Seconds-long and dropped (see above); the ALGs are their own root.
  "fragments",
  "alg",
];

/** Arrays with one entry per flow record, or per mapping record, in record order. */
const PER_FLOW = [
  "engine.flowTable.u32",
  "engine.tcp.words",
  "engine.wheel.next",
  "engine.wheel.prev",
  "engine.halfOpen.next",
  "engine.halfOpen.prev",
  "engine.halfOpen.linked",
  "engine.halfOpen.since",
];
const PER_MAPPING = [
  "engine.mappingTable.u32",
  "engine.mappingTable.proto",
  "engine.portQuota.chargedTo",
  "engine.closedMappings.open",
  "engine.closedMappings.byHost.next",
  "engine.closedMappings.byHost.prev",
  "engine.closedMappings.byHost.listOf",
  "engine.closedMappings.all.next",
  "engine.closedMappings.all.prev",
  "engine.closedMappings.all.listOf",
  "engine.closedMappings.pins.count",
];

function options(s: EngineState, parts: ImageParts): WalkOptions {
  // Records past a table's high-water mark were never used: zero, and not worth faulting in.
  const flows = s.flowTable.highWater / s.flowTable.capacity;
  const mappings = s.mappingTable.highWater / s.mappingTable.capacity;
  const extent = (path: string, bytes: number) =>
    PER_FLOW.includes(path)
      ? Math.ceil(bytes * flows)
      : PER_MAPPING.includes(path)
        ? Math.ceil(bytes * mappings)
        : undefined;
  return { skip: new Set([...ENGINE_SKIP, ...parts.skip]), classes: parts.classes, extent };
}

function roots(s: EngineState, parts: ImageParts): Record<string, object> {
  return { engine: s, ...parts.roots };
}

export function captureEngine(s: EngineState, parts: ImageParts): StateImage<Uint8Array> {
  return captureImage(roots(s, parts), options(s, parts));
}

/** Restores an image into a fresh engine of the same configuration; ImageMismatch when it does not fit. */
export function restoreEngine(s: EngineState, image: StateImage, parts: ImageParts): void {
  restoreImage(roots(s, parts), image, options(s, parts));
}

/** The image's leaves as this code lays them out (state-image.ts imageShape). */
export function engineShape(s: EngineState, parts: ImageParts): string[] {
  return imageShape(roots(s, parts), options(s, parts));
}
