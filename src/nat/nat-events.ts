// NAT events for the abuse desk's log (RFC 6888 §4, RFC 7422 §1): a mapping made or gone, and
// with `sessions` each flow too, recorded by the engine into a preallocated ring and drained by
// the control plane (src/natlog/), which formats and sends them. The engine only writes typed
// arrays here (no allocation, no I/O); a full ring loses the newest event and counts it.
//
// The ring lives in one SharedArrayBuffer with its head and tail in an Int32Array, written with
// Atomics: one producer (the engine) and one consumer (the drain), which may be another thread
// than the engine's (NatEventRing.over gives the consumer its view of the same buffer).

/** A mapping (RFC 8158's NAT44 BIB entry: inside address:port ↔ outside address:port) was made. */
export const EV_MAPPING_CREATED = 1;
/** A mapping went (its last flow and pin ended, it was lent to another connection, or moved). */
export const EV_MAPPING_DELETED = 2;
/** A flow (RFC 8158's NAT44 session) was made: only with `sessions`. */
export const EV_SESSION_CREATED = 3;
export const EV_SESSION_DELETED = 4;
/** An inside host was refused a mapping: it holds its share of the ports (RFC 6888 REQ-4). */
export const EV_QUOTA_EXCEEDED = 5;
/** A port block (src/nat/port-blocks.ts) was given to an inside host, or freed: one record per block. */
export const EV_PORT_BLOCK_ADDED = 6;
export const EV_PORT_BLOCK_DELETED = 7;

/** Words per event: kind << 8 | protocol, inside addr, outside addr, ports, remote addr, aux. */
const WORDS = 6;
const W_KIND_PROTO = 0;
const W_IN_ADDR = 1;
const W_OUT_ADDR = 2;
/** inside port << 16 | outside port (a port block: first port << 16 | last port). */
const W_PORTS = 3;
const W_REM_ADDR = 4;
/** The remote port, or a quota event's limit. */
const W_AUX = 5;
/** Control words: events written, events read, events lost to a full ring. */
const CTL_TAIL = 0;
const CTL_HEAD = 1;
const CTL_LOST = 2;
const CTL_WORDS = 4;

/** One event as the drain sees it; the same object is refilled for each event. */
export class NatEvent {
  kind = 0;
  proto = 0;
  /** The engine's clock (ms) when it happened. */
  timeMs = 0;
  inAddr = 0;
  inPort = 0;
  outAddr = 0;
  outPort = 0;
  remAddr = 0;
  remPort = 0;
  /** EV_QUOTA_EXCEEDED: the host's limit (ports per protocol). */
  limit = 0;
}

export class NatEventRing {
  readonly capacity: number;
  readonly buffer: SharedArrayBuffer;
  private readonly mask: number;
  private readonly ctl: Int32Array;
  private readonly words: Uint32Array;
  private readonly times: Float64Array;

  /** A ring of `capacity` events (rounded up to a power of two). */
  static create(capacity: number): NatEventRing {
    let n = 16;
    while (n < capacity) n *= 2;
    return new NatEventRing(new SharedArrayBuffer(n * 8 + n * WORDS * 4 + CTL_WORDS * 4), n);
  }

  /** Another view (another thread's) of the ring in `buffer`. */
  static over(buffer: SharedArrayBuffer): NatEventRing {
    return new NatEventRing(buffer, (buffer.byteLength - CTL_WORDS * 4) / (8 + WORDS * 4));
  }

  private constructor(buffer: SharedArrayBuffer, capacity: number) {
    this.buffer = buffer;
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.times = new Float64Array(buffer, 0, capacity);
    this.words = new Uint32Array(buffer, capacity * 8, capacity * WORDS);
    this.ctl = new Int32Array(buffer, capacity * 8 + capacity * WORDS * 4, CTL_WORDS);
  }

  /** Events lost because the ring was full when they happened. */
  get lost(): number {
    return Atomics.load(this.ctl, CTL_LOST) >>> 0;
  }

  /** Events waiting to be drained. */
  get pending(): number {
    return (Atomics.load(this.ctl, CTL_TAIL) - Atomics.load(this.ctl, CTL_HEAD)) | 0;
  }

  /** Records an event; false (and counted as lost) when the ring is full. No allocation. */
  push(
    kind: number,
    proto: number,
    timeMs: number,
    inAddr: number,
    inPort: number,
    outAddr: number,
    outPort: number,
    remAddr: number,
    aux: number,
  ): boolean {
    const tail = Atomics.load(this.ctl, CTL_TAIL);
    if (((tail - Atomics.load(this.ctl, CTL_HEAD)) | 0) >= this.capacity) {
      Atomics.add(this.ctl, CTL_LOST, 1);
      return false;
    }
    const slot = tail & this.mask;
    const w = this.words;
    const b = slot * WORDS;
    w[b + W_KIND_PROTO] = (kind << 8) | proto;
    w[b + W_IN_ADDR] = inAddr;
    w[b + W_OUT_ADDR] = outAddr;
    w[b + W_PORTS] = ((inPort << 16) | outPort) >>> 0;
    w[b + W_REM_ADDR] = remAddr;
    w[b + W_AUX] = aux;
    this.times[slot] = timeMs;
    // The slot is written before the consumer can see it (Atomics order the plain writes).
    Atomics.store(this.ctl, CTL_TAIL, (tail + 1) | 0);
    return true;
  }

  /**
   * Hands up to `max` events, oldest first, to `visit` (one NatEvent object, refilled for each:
   * copy what you keep); returns how many.
   */
  drain(visit: (e: NatEvent) => void, max = this.capacity, into = new NatEvent()): number {
    let head = Atomics.load(this.ctl, CTL_HEAD);
    const tail = Atomics.load(this.ctl, CTL_TAIL);
    let n = 0;
    const w = this.words;
    while (head !== tail && n < max) {
      const slot = head & this.mask;
      const b = slot * WORDS;
      into.kind = w[b + W_KIND_PROTO] >>> 8;
      into.proto = w[b + W_KIND_PROTO] & 0xff;
      into.timeMs = this.times[slot];
      into.inAddr = w[b + W_IN_ADDR];
      into.inPort = w[b + W_PORTS] >>> 16;
      into.outAddr = w[b + W_OUT_ADDR];
      into.outPort = w[b + W_PORTS] & 0xffff;
      into.remAddr = w[b + W_REM_ADDR];
      into.remPort = into.kind === EV_QUOTA_EXCEEDED ? 0 : w[b + W_AUX];
      into.limit = into.kind === EV_QUOTA_EXCEEDED ? w[b + W_AUX] : 0;
      head = (head + 1) | 0;
      // Freed before the visit, so a visit that throws does not replay the event forever.
      Atomics.store(this.ctl, CTL_HEAD, head);
      n++;
      visit(into);
    }
    // A producer waiting for room (waitForRoom) wakes now, not at its next poll.
    if (n > 0) Atomics.notify(this.ctl, CTL_HEAD);
    return n;
  }

  /**
   * The producer waits, at most `timeoutMs`, until the consumer has drained the ring to below half
   * full; whether it has. For a producer that must lose nothing and may block: a worker's end of
   * the table at stop (end-of-log.ts), whose consumer is the main thread. Never the packet path.
   */
  waitForRoom(timeoutMs: number): boolean {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const head = Atomics.load(this.ctl, CTL_HEAD);
      if (this.pending < this.capacity / 2) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.ctl, CTL_HEAD, head, left);
    }
  }
}
