// Who may ask for a port mapping. A NAT-PMP/PCP request names its host only by its source
// address, which an inside host can forge at will: 75 forged sources from one host once took 75
// per-host quotas, the whole UDP range for 24 h (issue 16 item 7). So a request is taken only from
// a host the gateway actually sees on the inside: one in the neighbour (ARP) table of the interface
// the request came in on, or on a configured list (hosts behind an inside router are no
// neighbours). Quotas are then counted per link-layer address, so a host that also forges ARP for
// many addresses still shares one quota; only one that forges link-layer addresses as well gets
// further, and the global cap on port-mapping mappings bounds that.
//
// The table is read from /proc/net/arp (this process's network namespace): one small file read,
// no process to spawn (as `ip -j neigh` would be), cached briefly and read again on a miss, at most
// a few times a second however many forged sources ask.
import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { parseIpv4 } from "../packet/addr.ts";

/** An IPv4 prefix as numbers. */
export interface Prefix {
  addr: number;
  len: number;
}

/** Who is behind a request's source address, as the gateway sees its inside. */
export interface RequestSources {
  /** The host's identity for quotas; undefined: not a host the gateway sees on the inside. */
  identify(addr: number, device: string | undefined): string | undefined;
  /** Resolves when `identify` can answer for addr with what the gateway knows now. */
  ready(addr: number, device: string | undefined): Promise<void>;
}

/** ATF_COM: the entry has a link-layer address (REACHABLE, STALE, DELAY, PROBE or PERMANENT). */
const ATF_COM = 0x02;
/** Bound on the entries read, so a huge or hostile table cannot take the daemon's memory. */
const MAX_ENTRIES = 65_536;

/** device -> IPv4 address -> link-layer address, of the complete entries of /proc/net/arp. */
export type NeighbourTable = Map<string, Map<number, string>>;

/**
 * Parses /proc/net/arp ("IP address  HW type  Flags  HW address  Mask  Device" per line): the
 * entries with a link-layer address, by device. Incomplete and failed entries (a host that never
 * answered ARP) are left out.
 */
export function parseProcNetArp(text: string): NeighbourTable {
  const table: NeighbourTable = new Map();
  let n = 0;
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const addr = parseIpv4(f[0]);
    const flags = Number.parseInt(f[2], 16);
    const lladdr = f[3].toLowerCase();
    if (addr === undefined || !Number.isFinite(flags) || (flags & ATF_COM) === 0) continue;
    if (/^(00:)*00$/.test(lladdr)) continue;
    let dev = table.get(f[5]);
    if (dev === undefined) {
      dev = new Map();
      table.set(f[5], dev);
    }
    dev.set(addr, lladdr);
    if (++n >= MAX_ENTRIES) break;
  }
  return table;
}

export interface NeighbourSourcesOptions {
  /** Hosts taken without a neighbour entry (counted by address). */
  allowed?: Prefix[];
  /** The neighbour table's text; default: /proc/net/arp. */
  read?: () => Promise<string>;
  nowMs?: () => number;
  /** A snapshot older than this is read again before it answers (ms). */
  maxAgeMs?: number;
  /** Reads at most this often, whatever asks (ms). */
  minIntervalMs?: number;
  /** Requests waiting for a read at once; more are answered from the snapshot there is. */
  maxWaiting?: number;
  /** Told when the table cannot be read, once until it can again (meanwhile nobody is a neighbour: fail closed). */
  onError?: (err: unknown) => void;
}

export class NeighbourSources implements RequestSources {
  private readonly allowed: Array<{ addr: number; mask: number }>;
  private readonly read: () => Promise<string>;
  private readonly nowMs: () => number;
  private readonly maxAgeMs: number;
  private readonly minIntervalMs: number;
  private readonly maxWaiting: number;
  private readonly onError: (err: unknown) => void;
  private table: NeighbourTable = new Map();
  /** When the snapshot was read (-Infinity: never). */
  private readAtMs = Number.NEGATIVE_INFINITY;
  private reading: Promise<void> | undefined;
  private waiting = 0;
  private failing = false;
  /** Reads of the table so far (for tests and stats). */
  reads = 0;

  constructor(opts: NeighbourSourcesOptions = {}) {
    this.allowed = (opts.allowed ?? []).map(({ addr, len }) => {
      const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
      return { addr: (addr & mask) >>> 0, mask };
    });
    this.read = opts.read ?? (() => readFile("/proc/net/arp", "utf8"));
    this.nowMs = opts.nowMs ?? (() => performance.now());
    this.maxAgeMs = opts.maxAgeMs ?? 2000;
    this.minIntervalMs = opts.minIntervalMs ?? 250;
    this.maxWaiting = opts.maxWaiting ?? 256;
    this.onError = opts.onError ?? (() => {});
  }

  private isAllowed(addr: number): boolean {
    for (const p of this.allowed) if ((addr & p.mask) >>> 0 === p.addr) return true;
    return false;
  }

  private lladdr(addr: number, device: string | undefined): string | undefined {
    if (device !== undefined) return this.table.get(device)?.get(addr);
    for (const dev of this.table.values()) {
      const l = dev.get(addr);
      if (l !== undefined) return l;
    }
    return undefined;
  }

  /** From the current snapshot: "mac:<lladdr>", "ip:<addr>" for an allowed host, or undefined. */
  identify(addr: number, device: string | undefined): string | undefined {
    if (this.isAllowed(addr)) return `ip:${addr >>> 0}`;
    const l = this.lladdr(addr, device);
    return l === undefined ? undefined : `mac:${l}`;
  }

  /**
   * Resolves once the snapshot can answer for `addr`: at once when it is fresh and knows the host
   * (or the host is allowed); else after the next read (a new host's entry may be younger than
   * the snapshot), which comes at most every minIntervalMs and is shared by all who wait.
   */
  async ready(addr: number, device: string | undefined): Promise<void> {
    if (this.isAllowed(addr)) return;
    const fresh = this.nowMs() - this.readAtMs < this.maxAgeMs;
    if (fresh && this.lladdr(addr, device) !== undefined) return;
    if (this.waiting >= this.maxWaiting) return;
    this.waiting++;
    try {
      await this.refresh();
    } finally {
      this.waiting--;
    }
  }

  /** Reads the table (one read in flight at a time, none sooner than minIntervalMs after the last). */
  private refresh(): Promise<void> {
    if (this.reading) return this.reading;
    const wait = this.readAtMs + this.minIntervalMs - this.nowMs();
    this.reading = (async () => {
      try {
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        this.reads++;
        this.table = parseProcNetArp(await this.read());
        this.failing = false;
      } catch (err) {
        this.table = new Map();
        // Once per failure, not at every read.
        if (!this.failing) this.onError(err);
        this.failing = true;
      } finally {
        this.readAtMs = this.nowMs();
        this.reading = undefined;
      }
    })();
    return this.reading;
  }
}
