// Fragments (RFC 4787 REQ-14): a later fragment carries no ports, so it is translated as its
// datagram's first was (recorded by firstFragment), and one that comes before its first waits
// in the fragment store until the first is through (or the timeout).
import { readU16, readU32 } from "../packet/checksum.ts";
import { IP_MF } from "../packet/ipv4.ts";
import { forwardTtl } from "../packet/ttl.ts";
import * as C from "./counters.ts";
import { handOff } from "./fragment-handoff.ts";
import {
  CLASS_INSIDE,
  CLASS_OUTSIDE,
  FRAG_DROP,
  FRAG_FORWARD,
  FRAG_HANDOFF,
  HOLD_OK,
  HOLD_SOURCE_BUDGET,
} from "./fragments.ts";
import { setDestination, setSource } from "./rewrite.ts";
import type { EngineState } from "./state.ts";
import { FORWARD, HELD } from "./verdicts.ts";

/** Inside sources' fragments are kept apart from outside ones (fragments.ts). */
function fragmentClass(s: EngineState, src: number): number {
  return s.isInside(src) ? CLASS_INSIDE : CLASS_OUTSIDE;
}

/**
 * A first fragment was forwarded (translated in place; `src`, `dst` are its addresses as it
 * came): later fragments of its datagram get the same addresses, the held ones at once.
 */
export function firstFragment(
  s: EngineState,
  b: Uint8Array,
  off: number,
  proto: number,
  src: number,
  dst: number,
): void {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  const id = readU16(b, off + 4);
  const newSrc = readU32(b, off + 12);
  const newDst = readU32(b, off + 16);
  const fr = s.fragments;
  fr.record(fragmentClass(s, src), src, dst, proto, id, FRAG_FORWARD, newSrc, newDst, s.nowSec);
  s.releaseSrc = newSrc;
  s.releaseDst = newDst;
  s.counters[C.C_FRAGMENTS_RELEASED] += fr.takeHeld(src, dst, proto, id, s.applyReleased);
  countReleaseLosses(s);
}

/** Held fragments the last release found no room for (released faster than taken): gone, counted. */
export function countReleaseLosses(s: EngineState): void {
  const lost = s.fragments.store.droppedOnRelease;
  if (lost > 0) {
    s.counters[C.D_FRAGMENT_BUFFER_FULL] += lost;
    s.counters[C.C_DROPPED] += lost;
  }
}

/**
 * The first fragment of datagram (src, dst, proto, id), as it came, was refused (dropped, or
 * answered instead): its later fragments go the same way at once instead of waiting in the
 * buffer for nothing.
 */
export function refuseDatagram(s: EngineState, src: number, dst: number, proto: number, id: number): void {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  s.fragments.record(fragmentClass(s, src), src, dst, proto, id, FRAG_DROP, 0, 0, s.nowSec);
}

/** refuseDatagram for the packet at `off` as it is now, when it is a first fragment. */
export function refuseDatagramAt(s: EngineState, b: Uint8Array, off: number): void {
  if ((readU16(b, off + 6) & IP_MF) === 0) return;
  refuseDatagram(s, readU32(b, off + 12), readU32(b, off + 16), b[off + 9], readU16(b, off + 4));
}

/** A fragment other than the first: translated like its first, held until it, or dropped. */
export function laterFragment(
  s: EngineState,
  b: Uint8Array,
  off: number,
  total: number,
  proto: number,
  src: number,
  dst: number,
): number {
  // The fast path passes addresses signed (never boxed); here they are unsigned again.
  src >>>= 0;
  dst >>>= 0;
  const id = readU16(b, off + 4);
  const fr = s.fragments;
  const cls = fragmentClass(s, src);
  const i = fr.find(cls, src, dst, proto, id);
  if (i < 0) {
    const held = fr.hold(cls, src, dst, proto, id, b, off, total, s.nowSec);
    // Fragments pushed out to make room are drops of their own: the source's own oldest when
    // it holds its share, its class's oldest when the class is full.
    const c = s.counters;
    const bySource = fr.store.evictedBySource;
    const byClass = fr.store.evictedByClass;
    c[C.D_FRAGMENT_SOURCE_BUDGET] += bySource;
    c[C.D_FRAGMENT_BUFFER_FULL] += byClass;
    c[C.C_DROPPED] += bySource + byClass;
    if (held === HOLD_SOURCE_BUDGET) return s.drop(C.D_FRAGMENT_SOURCE_BUDGET);
    if (held !== HOLD_OK) return s.drop(C.D_FRAGMENT_BUFFER_FULL);
    c[C.C_FRAGMENTS_HELD]++;
    return HELD;
  }
  const action = fr.actionAt(i);
  if (action === FRAG_DROP) return s.drop(C.D_FRAGMENT_OF_DROPPED);
  if (action === FRAG_HANDOFF) return handOff(s, fr.newSrcAt(i), b, off, total);
  s.outLen = total;
  return applyFragment(s, b, off, fr.newSrcAt(i), fr.newDstAt(i));
}

/** Gives a later fragment its datagram's new addresses and the forwarded TTL. */
export function applyFragment(
  s: EngineState,
  b: Uint8Array,
  off: number,
  newSrc: number,
  newDst: number,
): number {
  if (readU32(b, off + 12) !== newSrc) setSource(b, off, newSrc);
  if (readU32(b, off + 16) !== newDst) setDestination(b, off, newDst);
  if (!forwardTtl(b, off, s.ttlMode)) return s.drop(C.D_TTL_EXCEEDED);
  s.counters[C.C_FRAGMENTS_TRANSLATED]++;
  return FORWARD;
}
