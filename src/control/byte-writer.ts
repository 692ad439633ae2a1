// Text written straight into a byte buffer: for output made of many small numbers and
// addresses (the connection table), where building strings per field would leave the garbage
// collector most of the work, and its pauses would stall the packet loop on the same thread.

const SPACE = 0x20;
const DOT = 0x2e;
const ZERO = 0x30;

export class ByteWriter {
  private buf: Buffer;
  private readonly names = new Map<string, Buffer>();
  /** Buffers handed back by `recycle()`, ready for the next chunk. */
  private readonly spare: Buffer[] = [];
  /** Bytes written since the last `take()`. */
  length = 0;

  constructor(private readonly initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Any string (UTF-8). */
  text(s: string): void {
    this.room(s.length * 3);
    this.length += this.buf.write(s, this.length, "utf8");
  }

  /**
   * A string from a small set that recurs (protocol, state and origin names): encoded once and
   * copied after that, which is cheaper than encoding it each time.
   */
  name(s: string): void {
    let b = this.names.get(s);
    if (b === undefined) {
      b = Buffer.from(s, "utf8");
      if (this.names.size < 256) this.names.set(s, b);
    }
    this.bytes(b);
  }

  /** Bytes as they are (pre-encoded constant text). */
  bytes(b: Uint8Array): void {
    this.room(b.length);
    const buf = this.buf;
    let at = this.length;
    // Most are a few bytes long: a loop beats the call into set() for those.
    if (b.length > 32) buf.set(b, at);
    else for (let i = 0; i < b.length; i++) buf[at + i] = b[i];
    at += b.length;
    this.length = at;
  }

  byte(c: number): void {
    this.room(1);
    this.buf[this.length++] = c;
  }

  /** A whole number 0 ≤ n < 2^53 in decimal (as JSON and String() write it). */
  uint(n: number): void {
    this.room(16);
    let digits = 1;
    for (let p = 10; p <= n; p *= 10) digits++;
    let end = this.length + digits;
    this.length = end;
    let v = n;
    do {
      const digit = v % 10;
      this.buf[--end] = ZERO + digit;
      v = (v - digit) / 10;
    } while (v > 0);
  }

  /** A 32-bit address in dotted-quad form. */
  ipv4(a: number): void {
    this.uint(a >>> 24);
    this.byte(DOT);
    this.uint((a >>> 16) & 0xff);
    this.byte(DOT);
    this.uint((a >>> 8) & 0xff);
    this.byte(DOT);
    this.uint(a & 0xff);
  }

  /** Spaces until `length - start` is at least `width`. */
  padTo(start: number, width: number): void {
    const n = start + width - this.length;
    if (n <= 0) return;
    this.room(n);
    const buf = this.buf;
    for (let i = this.length, end = this.length + n; i < end; i++) buf[i] = SPACE;
    this.length += n;
  }

  /**
   * What was written since the last call; the writer goes on in another buffer (a recycled one
   * when there is one), as the caller keeps this one until it is sent.
   */
  take(): Buffer {
    const out = this.buf.subarray(0, this.length);
    this.buf = this.spare.pop() ?? Buffer.allocUnsafe(this.initialBytes);
    this.length = 0;
    return out;
  }

  /**
   * A buffer `take()` gave out is free again (sent). Reusing it instead of allocating one per
   * chunk keeps the garbage collector from full collections, which the V8 heap starts when much
   * memory outside it has been allocated since the last, and which stop the packet loop.
   */
  recycle(chunk: Uint8Array): void {
    const whole = chunk.buffer;
    if (chunk.byteOffset !== 0 || whole.byteLength !== this.initialBytes || this.spare.length >= 2) return;
    this.spare.push(Buffer.from(whole, 0, whole.byteLength));
  }

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }
}
