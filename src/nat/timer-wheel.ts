// A timer wheel for flow expiry (one slot per second, doubly linked lists). Timers are lazy: a
// packet only refreshes the flow's last-seen second; when the flow's slot comes round the owner
// recomputes the real deadline and either expires the flow or has it rescheduled. So the
// per-packet cost is one store, expiry never scans the table, and each flow is visited about
// once per timeout period. A state change that shortens the timeout (FIN, RST) moves the timer
// at once (O(1) unlink), so closed connections give their ports back on time.

const HEAD_FLAG = 0x80000000;

export class TimerWheel {
  private readonly heads: Uint32Array;
  private readonly slotMask: number;
  /** next[i]: index + 1 of the following record in the slot, 0 at the end. */
  private readonly next: Uint32Array;
  /** prev[i]: index + 1 of the previous record, HEAD_FLAG | slot for a slot's first, 0 when unscheduled. */
  private readonly prev: Uint32Array;
  /** The next second the wheel has not yet processed (-1 before the first advance). */
  private cursor = -1;
  scheduled = 0;

  constructor(slots: number, capacity: number) {
    let n = 1;
    while (n < slots) n *= 2;
    this.heads = new Uint32Array(n);
    this.slotMask = n - 1;
    this.next = new Uint32Array(capacity);
    this.prev = new Uint32Array(capacity);
  }

  get byteLength(): number {
    return this.heads.byteLength + this.next.byteLength + this.prev.byteLength;
  }

  isScheduled(i: number): boolean {
    return this.prev[i] !== 0;
  }

  /** Puts record i in the slot of `deadlineSec` (a second on the engine clock). */
  schedule(i: number, deadlineSec: number): void {
    if (this.prev[i] !== 0) this.unschedule(i);
    if (this.cursor >= 0 && deadlineSec < this.cursor) deadlineSec = this.cursor;
    const slot = deadlineSec & this.slotMask;
    const h = this.heads[slot];
    this.next[i] = h;
    if (h !== 0) this.prev[h - 1] = i + 1;
    this.prev[i] = (HEAD_FLAG | slot) >>> 0;
    this.heads[slot] = i + 1;
    this.scheduled++;
  }

  unschedule(i: number): void {
    const p = this.prev[i];
    if (p === 0) return;
    const n = this.next[i];
    if (p & HEAD_FLAG) this.heads[p & ~HEAD_FLAG] = n;
    else this.next[p - 1] = n;
    if (n !== 0) this.prev[n - 1] = p;
    this.prev[i] = 0;
    this.next[i] = 0;
    this.scheduled--;
  }

  /**
   * Processes the slots up to and including `nowSec`. For each record found, `due(i)` returns the
   * record's real deadline: a later second reschedules it; -1 means the owner removed it (and must
   * not have rescheduled it). At most `budget` records are visited per call, so one call never
   * stalls the packet loop; returns true when it stopped early (call again).
   */
  advance(nowSec: number, due: (i: number) => number, budget: number): boolean {
    if (this.cursor < 0) this.cursor = nowSec;
    const span = this.slotMask + 1;
    // After a long pause one full turn covers every slot (deadlines are rechecked anyway).
    if (nowSec - this.cursor >= span) this.cursor = nowSec - span + 1;
    let visited = 0;
    while (this.cursor <= nowSec) {
      const slot = this.cursor & this.slotMask;
      for (;;) {
        const h = this.heads[slot];
        if (h === 0) break;
        if (visited++ >= budget) return true;
        const i = h - 1;
        this.unschedule(i);
        const deadline = due(i);
        // A deadline still in this second goes to the next one, and one a turn or more away to
        // the slot before this one (it comes round again then and is rechecked): either way not
        // back into this slot, so a slot always drains.
        if (deadline >= 0)
          this.schedule(
            i,
            deadline <= this.cursor ? this.cursor + 1 : Math.min(deadline, this.cursor + span - 1),
          );
      }
      this.cursor++;
    }
    return false;
  }
}
