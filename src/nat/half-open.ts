// Inbound TCP connections that have not completed their handshake, oldest first: the flows a SYN
// flood makes. They are counted apart from the inside host's own flows (a flood at a forward must
// not use up the server's quota, RFC 6888 REQ-4) and, under pressure, the oldest is evicted first
// and never an established connection. An intrusive doubly linked list over typed arrays indexed
// by flow: adding, removing and finding the oldest cost O(1) and allocate nothing.

const NONE = 0;

export class HalfOpenQueue {
  /** next[f] / prev[f]: flow index + 1 of the neighbours (0: none); `linked` says membership. */
  private readonly next: Uint32Array;
  private readonly prev: Uint32Array;
  private readonly linked: Uint8Array;
  /** When each flow joined, on the caller's millisecond clock modulo 2^32. */
  private readonly since: Uint32Array;
  private head = NONE;
  private tail = NONE;
  count = 0;

  constructor(capacity: number) {
    this.next = new Uint32Array(capacity);
    this.prev = new Uint32Array(capacity);
    this.linked = new Uint8Array(capacity);
    this.since = new Uint32Array(capacity);
  }

  get byteLength(): number {
    return this.next.byteLength + this.prev.byteLength + this.linked.byteLength + this.since.byteLength;
  }

  has(f: number): boolean {
    return this.linked[f] !== 0;
  }

  /** Appends flow f as the newest; a flow already queued keeps its place. */
  push(f: number, nowMs: number): void {
    if (this.linked[f] !== 0) return;
    this.linked[f] = 1;
    this.since[f] = nowMs >>> 0;
    this.next[f] = NONE;
    this.prev[f] = this.tail;
    if (this.tail !== NONE) this.next[this.tail - 1] = f + 1;
    else this.head = f + 1;
    this.tail = f + 1;
    this.count++;
  }

  /** Takes flow f out (its handshake completed, or it ended); false when it was not queued. */
  remove(f: number): boolean {
    if (this.linked[f] === 0) return false;
    const n = this.next[f];
    const p = this.prev[f];
    if (p !== NONE) this.next[p - 1] = n;
    else this.head = n;
    if (n !== NONE) this.prev[n - 1] = p;
    else this.tail = p;
    this.linked[f] = 0;
    this.count--;
    return true;
  }

  /** The flow queued longest, or -1 when none is. */
  oldest(): number {
    return this.head - 1;
  }

  /** How long flow f has been queued at `nowMs`, in ms (0 when it is not queued). */
  ageMs(f: number, nowMs: number): number {
    return this.linked[f] === 0 ? 0 : ((nowMs >>> 0) - this.since[f]) >>> 0;
  }
}
