// Classic pcap files (not pcapng): the reader feeds offline replay and golden tests, the writer
// produces files tcpdump and Wireshark open. The format is small enough to own: a 24-byte file
// header, then records of a 16-byte header and the captured bytes (see pcap-savefile(5) and
// draft-ietf-opsawg-pcap). No maintained npm package reads it.
//
// The reader works over the whole file in memory and yields one record at a time through fields
// (no object per packet). Damage never throws from next(): a record that cannot be framed ends
// the file and is counted, a record that cannot be replayed (cut by the snaplen, not IPv4) is
// counted and skipped.

/** IPv4 or IPv6 with no link-layer header (what a TUN device carries). */
export const LINKTYPE_RAW = 101;
export const LINKTYPE_ETHERNET = 1;
/** Linux "cooked" capture (`tcpdump -i any`): a 16-byte pseudo-header. */
export const LINKTYPE_LINUX_SLL = 113;
/** Linux cooked v2 (`tcpdump -i any` since libpcap 1.10): a 20-byte pseudo-header. */
export const LINKTYPE_LINUX_SLL2 = 276;
/** IPv4 only, no link-layer header. */
export const LINKTYPE_IPV4 = 228;

const MAGIC_USEC = 0xa1b2c3d4;
const MAGIC_NSEC = 0xa1b23c4d;
const FILE_HEADER = 24;
const RECORD_HEADER = 16;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;
/**
 * Larger than any packet an IPv4 engine can meet (64 KiB plus a link header); a record claiming
 * more is a corrupt length, and since lengths are the only framing the rest cannot be trusted.
 */
const MAX_RECORD = 262_144;

/** The file itself is unusable (not a pcap file, or too short for its header). */
export class PcapFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PcapFormatError";
  }
}

/** How the reader dealt with records it could not hand over. */
export interface PcapReadCounters {
  /** Records handed to the caller. */
  packets: number;
  /** Captured shorter than on the wire (snaplen): the packet is incomplete and was skipped. */
  snapTruncated: number;
  /** Not IPv4 (ARP, IPv6, other EtherTypes) or too short for its link-layer header: skipped. */
  notIpv4: number;
}

/** Where and why reading stopped before the end of the file; undefined when the file was whole. */
export interface PcapDamage {
  /** Byte offset of the record header that could not be used. */
  offset: number;
  /** Index (from 0) of that record among all records in the file. */
  record: number;
  problem: string;
}

export class PcapReader {
  readonly linkType: number;
  readonly snaplen: number;
  /** Timestamps have nanosecond fractions (magic 0xa1b23c4d) rather than microseconds. */
  readonly nanoseconds: boolean;
  readonly littleEndian: boolean;
  readonly versionMajor: number;
  readonly versionMinor: number;
  readonly counters: PcapReadCounters = { packets: 0, snapTruncated: 0, notIpv4: 0 };
  /** Set when a record could not be framed (truncated file, length beyond the file, absurd length). */
  damage: PcapDamage | undefined;

  // The current record (valid after next() returned true).
  /** Seconds of the capture timestamp. */
  tsSec = 0;
  /** Fraction of the second, in microseconds or nanoseconds (see `nanoseconds`). */
  tsFrac = 0;
  /** Bytes captured and bytes on the wire. */
  capLen = 0;
  origLen = 0;
  /** The IPv4 packet: data[ipOff, ipOff + ipLen), link-layer header already skipped. */
  ipOff = 0;
  ipLen = 0;

  readonly data: Uint8Array;
  private readonly view: DataView;
  private pos = FILE_HEADER;
  private records = 0;

  /** Throws PcapFormatError when `data` is not a classic pcap file. */
  constructor(data: Uint8Array) {
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data.length < 4) throw new PcapFormatError(`file too short for a pcap header (${data.length} bytes)`);
    const be = this.view.getUint32(0, false);
    const le = this.view.getUint32(0, true);
    if (be === MAGIC_USEC || be === MAGIC_NSEC) this.littleEndian = false;
    else if (le === MAGIC_USEC || le === MAGIC_NSEC) this.littleEndian = true;
    else {
      const hex = be.toString(16).padStart(8, "0");
      const hint = be === 0x0a0d0d0a ? " (this is pcapng: convert it with `editcap -F pcap in out`)" : "";
      throw new PcapFormatError(`bad pcap magic 0x${hex}${hint}`);
    }
    this.nanoseconds = (this.littleEndian ? le : be) === MAGIC_NSEC;
    if (data.length < FILE_HEADER)
      throw new PcapFormatError(`truncated pcap file header (${data.length} of ${FILE_HEADER} bytes)`);
    this.versionMajor = this.view.getUint16(4, this.littleEndian);
    this.versionMinor = this.view.getUint16(6, this.littleEndian);
    this.snaplen = this.view.getUint32(16, this.littleEndian);
    // The upper bits of the link-type field carry FCS information; the type is the low 16 bits.
    this.linkType = this.view.getUint32(20, this.littleEndian) & 0xffff;
    if (!isSupportedLinkType(this.linkType))
      throw new PcapFormatError(
        `unsupported link type ${this.linkType} (supported: ${LINKTYPE_RAW} raw IP, ${LINKTYPE_ETHERNET} Ethernet, ${LINKTYPE_LINUX_SLL}/${LINKTYPE_LINUX_SLL2} Linux cooked, ${LINKTYPE_IPV4} IPv4)`,
      );
  }

  /** The current record's timestamp in milliseconds (fractional). */
  get timeMs(): number {
    return this.tsSec * 1000 + (this.nanoseconds ? this.tsFrac / 1e6 : this.tsFrac / 1e3);
  }

  /** The current record's fraction of a second in microseconds, whatever the file's resolution. */
  get tsUsec(): number {
    return this.nanoseconds ? Math.floor(this.tsFrac / 1000) : this.tsFrac;
  }

  /**
   * Advances to the next IPv4 packet; false at the end of the file or where the file is damaged
   * (then `damage` says why). Records that cannot be replayed are counted and skipped.
   */
  next(): boolean {
    const d = this.data;
    const v = this.view;
    const le = this.littleEndian;
    for (;;) {
      if (this.damage !== undefined) return false;
      const pos = this.pos;
      const left = d.length - pos;
      if (left === 0) return false;
      if (left < RECORD_HEADER) {
        this.setDamage(`truncated record header (${left} of ${RECORD_HEADER} bytes at the end of the file)`);
        return false;
      }
      const capLen = v.getUint32(pos + 8, le);
      const origLen = v.getUint32(pos + 12, le);
      if (capLen > MAX_RECORD) {
        this.setDamage(`record length ${capLen} is impossible (corrupt file)`);
        return false;
      }
      if (capLen > left - RECORD_HEADER) {
        this.setDamage(
          `truncated record: it claims ${capLen} bytes but the file has ${left - RECORD_HEADER} left`,
        );
        return false;
      }
      this.tsSec = v.getUint32(pos, le);
      this.tsFrac = v.getUint32(pos + 4, le);
      this.capLen = capLen;
      this.origLen = origLen;
      this.records++;
      const start = pos + RECORD_HEADER;
      this.pos = start + capLen;
      if (capLen < origLen) {
        this.counters.snapTruncated++;
        continue;
      }
      const ip = this.ipStart(start, capLen);
      if (ip < 0) {
        this.counters.notIpv4++;
        continue;
      }
      this.ipOff = ip;
      this.ipLen = start + capLen - ip;
      this.counters.packets++;
      return true;
    }
  }

  /** Offset of the IPv4 header in a record, or -1 when the record holds no IPv4 packet. */
  private ipStart(start: number, len: number): number {
    const d = this.data;
    switch (this.linkType) {
      case LINKTYPE_RAW:
        return len >= 1 && d[start] >> 4 === 4 ? start : -1;
      case LINKTYPE_IPV4:
        return start;
      case LINKTYPE_LINUX_SLL:
        return len >= 16 && ((d[start + 14] << 8) | d[start + 15]) === ETHERTYPE_IPV4 ? start + 16 : -1;
      case LINKTYPE_LINUX_SLL2:
        return len >= 20 && ((d[start] << 8) | d[start + 1]) === ETHERTYPE_IPV4 ? start + 20 : -1;
      default: {
        // Ethernet: destination, source, then the EtherType, after up to two VLAN tags.
        let off = 12;
        for (let tags = 0; tags <= 2; tags++) {
          if (len < off + 2) return -1;
          const type = (d[start + off] << 8) | d[start + off + 1];
          if (type === ETHERTYPE_IPV4) return start + off + 2;
          if (type !== ETHERTYPE_VLAN && type !== ETHERTYPE_QINQ) return -1;
          off += 4;
        }
        return -1;
      }
    }
  }

  private setDamage(problem: string): void {
    this.damage = { offset: this.pos, record: this.records, problem };
  }
}

function isSupportedLinkType(t: number): boolean {
  return (
    t === LINKTYPE_RAW ||
    t === LINKTYPE_ETHERNET ||
    t === LINKTYPE_LINUX_SLL ||
    t === LINKTYPE_LINUX_SLL2 ||
    t === LINKTYPE_IPV4
  );
}

/**
 * Writes a LINKTYPE_RAW, microsecond, little-endian pcap into a growing in-memory buffer; `bytes()`
 * returns the file. Packets longer than the snaplen are cut to it with their original length kept,
 * as a capture would.
 */
export class PcapWriter {
  readonly snaplen: number;
  private buf: Uint8Array;
  private view: DataView;
  private len = FILE_HEADER;
  packets = 0;

  constructor(opts: { snaplen?: number; linkType?: number; initialBytes?: number } = {}) {
    this.snaplen = opts.snaplen ?? 262_144;
    this.buf = new Uint8Array(Math.max(FILE_HEADER + 1024, opts.initialBytes ?? 1 << 20));
    this.view = new DataView(this.buf.buffer);
    const v = this.view;
    v.setUint32(0, MAGIC_USEC, true);
    v.setUint16(4, 2, true);
    v.setUint16(6, 4, true);
    v.setInt32(8, 0, true); // thiszone: timestamps are UTC
    v.setUint32(12, 0, true); // sigfigs
    v.setUint32(16, this.snaplen, true);
    v.setUint32(20, opts.linkType ?? LINKTYPE_RAW, true);
  }

  /** Appends buf[off, off + len) captured at tsSec + tsUsec/1e6. */
  write(buf: Uint8Array, off: number, len: number, tsSec: number, tsUsec: number): void {
    const cap = Math.min(len, this.snaplen);
    const need = this.len + RECORD_HEADER + cap;
    if (need > this.buf.length) this.grow(need);
    const v = this.view;
    const p = this.len;
    v.setUint32(p, tsSec >>> 0, true);
    v.setUint32(p + 4, tsUsec >>> 0, true);
    v.setUint32(p + 8, cap, true);
    v.setUint32(p + 12, len, true);
    this.buf.set(buf.subarray(off, off + cap), p + RECORD_HEADER);
    this.len = need;
    this.packets++;
  }

  /** The file so far (a view, valid until the next write). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  private grow(need: number): void {
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
}
