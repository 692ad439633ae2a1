// pcap reader/writer, the memory BatchIo, and `masq replay`, with a golden replay: a scenario
// built here (test/golden/replay-in.pcap) replayed through the engine must give exactly the
// committed test/golden/replay-out.pcap and replay-summary.txt. After an intended behaviour
// change, regenerate with `UPDATE_GOLDEN=1 node --import tsx --test test/unit/io/pcap.test.ts` and
// review the difference (`tcpdump -r test/golden/replay-out.pcap -nv`).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  formatReplaySummary,
  holdsPartialChecksum,
  replayBytes,
  replayConfig,
  runReplay,
} from "../../../src/cli/replay.ts";
import { Datapath } from "../../../src/datapath/datapath.ts";
import { MemoryIo } from "../../../src/io/memory.ts";
import {
  LINKTYPE_ETHERNET,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_RAW,
  PcapFormatError,
  PcapReader,
  PcapWriter,
} from "../../../src/io/pcap.ts";
import { NatEngine } from "../../../src/nat/engine.ts";
import { fold, pseudoHeaderSum, writeU16 } from "../../../src/packet/checksum.ts";
import {
  ACK,
  checksumProblems,
  FIN,
  icmpEcho,
  icmpError,
  ip,
  PSH,
  SYN,
  splitFragments,
  tcp,
  u16,
  u32,
  udp,
} from "../../helpers/packets.ts";
import { TEST_HASH_SEED } from "../nat/engine-helpers.ts";

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "golden");
const UPDATE = process.env.UPDATE_GOLDEN === "1";

// ------------------------------------------------------------------ building pcap files by hand

interface Rec {
  sec: number;
  /** Fraction in the file's unit (µs or ns). */
  frac: number;
  data: Uint8Array;
  /** Length on the wire when larger than the captured data (snaplen cut). */
  origLen?: number;
}

/** A classic pcap file in any byte order and resolution, independent of the code under test. */
function pcapFile(recs: Rec[], o: { be?: boolean; ns?: boolean; linkType?: number } = {}): Uint8Array {
  const size = 24 + recs.reduce((n, r) => n + 16 + r.data.length, 0);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  const le = !o.be;
  v.setUint32(0, o.ns ? 0xa1b23c4d : 0xa1b2c3d4, le);
  v.setUint16(4, 2, le);
  v.setUint16(6, 4, le);
  v.setUint32(16, 65535, le);
  v.setUint32(20, o.linkType ?? LINKTYPE_RAW, le);
  let p = 24;
  for (const r of recs) {
    v.setUint32(p, r.sec, le);
    v.setUint32(p + 4, r.frac, le);
    v.setUint32(p + 8, r.data.length, le);
    v.setUint32(p + 12, r.origLen ?? r.data.length, le);
    b.set(r.data, p + 16);
    p += 16 + r.data.length;
  }
  return b;
}

function ethernet(payload: Uint8Array, etherType = 0x0800, vlan = false): Uint8Array {
  const h = vlan ? 18 : 14;
  const f = new Uint8Array(h + payload.length);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], 0);
  if (vlan) {
    writeU16(f, 12, 0x8100);
    writeU16(f, 14, 42);
  }
  writeU16(f, h - 2, etherType);
  f.set(payload, h);
  return f;
}

function sll(payload: Uint8Array, protocol = 0x0800): Uint8Array {
  const f = new Uint8Array(16 + payload.length);
  writeU16(f, 2, 1); // ARPHRD_ETHER
  writeU16(f, 4, 6);
  writeU16(f, 14, protocol);
  f.set(payload, 16);
  return f;
}

function readAll(file: Uint8Array): { pkts: Uint8Array[]; ms: number[]; reader: PcapReader } {
  const reader = new PcapReader(file);
  const pkts: Uint8Array[] = [];
  const ms: number[] = [];
  while (reader.next()) {
    pkts.push(reader.data.slice(reader.ipOff, reader.ipOff + reader.ipLen));
    ms.push(reader.timeMs);
  }
  return { pkts, ms, reader };
}

// ------------------------------------------------------------------ the golden scenario

const A = "192.168.0.2";
const B = "192.168.0.3";
const C = "192.168.0.4";
const WEB = "203.0.113.10";
const POOL = "198.51.100.100";
const T0 = 1_764_000_000; // 2025-11-24, a fixed epoch second

/**
 * What the TUN would deliver in pool mode: inside traffic and replies to the pool address, with
 * the cases a NAT owner cares about. Pool mode owns every port, so inside ports are preserved and the replies
 * can be written here without running the engine first.
 */
function goldenScenario(): Rec[] {
  const recs: Rec[] = [];
  let usec = 0;
  const at = (data: Uint8Array, stepUs = 1000) => {
    usec += stepUs;
    recs.push({ sec: T0 + Math.floor(usec / 1e6), frac: usec % 1e6, data });
  };
  // UDP (DNS-like) out and its answer in.
  const query = udp({ src: A, dst: WEB, sport: 61001, dport: 53, payload: 28, id: 1 });
  at(query);
  at(udp({ src: WEB, dst: POOL, sport: 53, dport: 61001, payload: 44, id: 2 }));
  // A port outside the pool range: the engine picks one (deterministically).
  at(udp({ src: A, dst: WEB, sport: 40000, dport: 123, payload: 48, id: 3 }));
  // TCP: handshake, data, close.
  at(tcp({ src: B, dst: WEB, sport: 61500, dport: 80, flags: SYN, seq: 100, id: 10 }));
  at(tcp({ src: WEB, dst: POOL, sport: 80, dport: 61500, flags: SYN | ACK, seq: 900, ack: 101, id: 11 }));
  at(tcp({ src: B, dst: WEB, sport: 61500, dport: 80, flags: ACK, seq: 101, ack: 901, id: 12 }));
  at(
    tcp({
      src: B,
      dst: WEB,
      sport: 61500,
      dport: 80,
      flags: ACK | PSH,
      seq: 101,
      ack: 901,
      payload: 40,
      id: 13,
    }),
  );
  at(
    tcp({
      src: WEB,
      dst: POOL,
      sport: 80,
      dport: 61500,
      flags: ACK | PSH,
      seq: 901,
      ack: 141,
      payload: 100,
      id: 14,
    }),
  );
  at(tcp({ src: B, dst: WEB, sport: 61500, dport: 80, flags: ACK | FIN, seq: 141, ack: 1001, id: 15 }));
  at(tcp({ src: WEB, dst: POOL, sport: 80, dport: 61500, flags: ACK | FIN, seq: 1001, ack: 142, id: 16 }));
  at(tcp({ src: B, dst: WEB, sport: 61500, dport: 80, flags: ACK, seq: 142, ack: 1002, id: 17 }));
  // ICMP echo by identifier.
  at(icmpEcho({ src: C, dst: WEB, id: 61999, seq: 1, ipId: 20 }));
  at(icmpEcho({ src: WEB, dst: POOL, type: 0, id: 61999, seq: 1, ipId: 21 }));
  // A router's time-exceeded for the UDP query, translated back with its embedded header.
  // (The quote is the query as it left masq, with the TTL the router found exhausted.)
  const outQuery = udp({ src: POOL, dst: WEB, sport: 61001, dport: 53, payload: 28, id: 1, ttl: 1 });
  at(icmpError({ from: "203.0.113.1", to: POOL, type: 11, code: 0, quoted: outQuery, quoteLen: 28 }));
  // A fragmented datagram, last fragment first: held, then released with the first.
  const [f1, f2] = splitFragments(
    udp({ src: C, dst: WEB, sport: 61700, dport: 5000, payload: 40, id: 30 }),
    24,
  );
  at(f2);
  at(f1);
  // Drops, one of each kind the summary should name.
  at(udp({ src: "203.0.113.99", dst: POOL, sport: 5060, dport: 62000, id: 40 })); // no mapping
  at(udp({ src: "203.0.113.77", dst: POOL, sport: 53, dport: 61001, id: 41 })); // filtered (address-dependent)
  at(tcp({ src: A, dst: WEB, sport: 61800, dport: 443, flags: ACK, id: 42 })); // mid-stream, no flow
  at(udp({ src: "172.16.5.5", dst: WEB, sport: 1000, dport: 53, id: 43 })); // not ours in pool mode
  const badSum = udp({ src: A, dst: WEB, sport: 61002, dport: 53, id: 44 });
  badSum[10] ^= 0xff;
  at(badSum); // IP header checksum
  // After the UDP timeout (300 s) the capture clock has moved on: the late answer finds nothing.
  at(udp({ src: WEB, dst: POOL, sport: 123, dport: 61001, id: 45 }), 400_000_000);
  return recs;
}

const GOLDEN_FLAGS = { inside: ["192.168.0.0/24"], address: [POOL] };

function goldenInput(): Uint8Array {
  return pcapFile(goldenScenario());
}

// ------------------------------------------------------------------ tests

describe("pcap reader", () => {
  const pkts = [
    udp({ src: A, dst: WEB, sport: 1, dport: 2 }),
    tcp({ src: B, dst: WEB, sport: 3, dport: 4, flags: SYN }),
  ];
  const recs = (ns: boolean): Rec[] => [
    { sec: T0, frac: ns ? 123_456_789 : 123_456, data: pkts[0] },
    { sec: T0 + 1, frac: ns ? 5_000 : 5, data: pkts[1] },
  ];

  for (const be of [false, true])
    for (const ns of [false, true])
      it(`reads ${be ? "big" : "little"}-endian files with ${ns ? "nano" : "micro"}second timestamps`, () => {
        const { pkts: got, ms, reader } = readAll(pcapFile(recs(ns), { be, ns }));
        assert.equal(reader.littleEndian, !be);
        assert.equal(reader.nanoseconds, ns);
        assert.equal(reader.linkType, LINKTYPE_RAW);
        assert.deepEqual(got, pkts);
        assert.equal(ms[0], T0 * 1000 + (ns ? 123.456789 : 123.456));
        assert.equal(ms[1], T0 * 1000 + 1000 + 0.005);
        assert.equal(reader.damage, undefined);
      });

  it("microsecond fraction of a nanosecond file is truncated, not rounded", () => {
    const r = new PcapReader(pcapFile(recs(true), { ns: true }));
    assert.ok(r.next());
    assert.equal(r.tsUsec, 123_456);
  });

  it("Ethernet: skips the 14-byte header (and VLAN tags) of IPv4 frames, counts and skips the rest", () => {
    const arp = ethernet(new Uint8Array(28), 0x0806);
    const v6 = ethernet(new Uint8Array(40), 0x86dd);
    const runt = new Uint8Array(10);
    const file = pcapFile(
      [
        { sec: T0, frac: 0, data: ethernet(pkts[0]) },
        { sec: T0, frac: 1, data: arp },
        { sec: T0, frac: 2, data: v6 },
        { sec: T0, frac: 3, data: runt },
        { sec: T0, frac: 4, data: ethernet(pkts[1], 0x0800, true) },
      ],
      { linkType: LINKTYPE_ETHERNET },
    );
    const { pkts: got, reader } = readAll(file);
    assert.deepEqual(got, pkts);
    assert.deepEqual(reader.counters, { packets: 2, snapTruncated: 0, notIpv4: 3 });
  });

  it("Linux cooked captures (tcpdump -i any): skips the 16-byte header", () => {
    const file = pcapFile(
      [
        { sec: T0, frac: 0, data: sll(pkts[0]) },
        { sec: T0, frac: 1, data: sll(new Uint8Array(40), 0x86dd) },
        { sec: T0, frac: 2, data: sll(pkts[1]) },
      ],
      { linkType: LINKTYPE_LINUX_SLL },
    );
    const { pkts: got, reader } = readAll(file);
    assert.deepEqual(got, pkts);
    assert.equal(reader.counters.notIpv4, 1);
  });

  it("Linux cooked v2 captures (tcpdump -i any, libpcap 1.10): skips the 20-byte header", () => {
    const sll2 = (payload: Uint8Array, protocol = 0x0800) => {
      const f = new Uint8Array(20 + payload.length);
      writeU16(f, 0, protocol);
      f.set(payload, 20);
      return f;
    };
    const file = pcapFile(
      [
        { sec: T0, frac: 0, data: sll2(pkts[0]) },
        { sec: T0, frac: 1, data: sll2(new Uint8Array(28), 0x0806) },
        { sec: T0, frac: 2, data: sll2(pkts[1]) },
      ],
      { linkType: LINKTYPE_LINUX_SLL2 },
    );
    const { pkts: got, reader } = readAll(file);
    assert.deepEqual(got, pkts);
    assert.equal(reader.counters.notIpv4, 1);
  });

  it("raw IP: IPv6 packets are counted and skipped", () => {
    const v6 = new Uint8Array(40);
    v6[0] = 0x60;
    const { pkts: got, reader } = readAll(
      pcapFile([
        { sec: T0, frac: 0, data: v6 },
        { sec: T0, frac: 1, data: pkts[0] },
      ]),
    );
    assert.deepEqual(got, [pkts[0]]);
    assert.equal(reader.counters.notIpv4, 1);
  });

  it("snaplen-cut packets are counted and skipped; the ones after them still come", () => {
    const file = pcapFile([
      { sec: T0, frac: 0, data: pkts[1].subarray(0, 30), origLen: pkts[1].length },
      { sec: T0, frac: 1, data: pkts[0] },
    ]);
    const { pkts: got, reader } = readAll(file);
    assert.deepEqual(got, [pkts[0]]);
    assert.equal(reader.counters.snapTruncated, 1);
    assert.equal(reader.damage, undefined);
  });

  it("a truncated last record header ends the file with damage noted, packets before it intact", () => {
    const whole = pcapFile(recs(false));
    const file = whole.subarray(0, whole.length - pkts[1].length - 10); // 6 bytes of the 2nd header
    const { pkts: got, reader } = readAll(file);
    assert.deepEqual(got, [pkts[0]]);
    assert.match(reader.damage?.problem ?? "", /truncated record header \(6 of 16 bytes/);
    assert.equal(reader.damage?.record, 1);
    assert.equal(reader.next(), false, "stays at the end");
  });

  it("a record longer than the rest of the file ends it with damage noted", () => {
    const whole = pcapFile(recs(false));
    const file = whole.subarray(0, whole.length - 5);
    const { pkts: got, reader } = readAll(file);
    assert.deepEqual(got, [pkts[0]]);
    assert.match(
      reader.damage?.problem ?? "",
      /truncated record: it claims 40 bytes but the file has 35 left/,
    );
    assert.equal(reader.damage?.offset, 24 + 16 + pkts[0].length);
  });

  it("an impossible record length is damage, not an attempt to allocate or read it", () => {
    const file = pcapFile(recs(false));
    new DataView(file.buffer).setUint32(24 + 8, 0x7fffffff, true);
    const { pkts: got, reader } = readAll(file);
    assert.deepEqual(got, []);
    assert.match(reader.damage?.problem ?? "", /impossible/);
  });

  it("refuses what is not a classic pcap file, naming the problem", () => {
    assert.throws(() => new PcapReader(new Uint8Array([1, 2])), /too short/);
    assert.throws(
      () => new PcapReader(new TextEncoder().encode("hello, this is not a pcap file")),
      /bad pcap magic 0x68656c6c/,
    );
    const ng = new Uint8Array(32);
    new DataView(ng.buffer).setUint32(0, 0x0a0d0d0a, false);
    assert.throws(() => new PcapReader(ng), /pcapng/);
    assert.throws(() => new PcapReader(pcapFile([]).subarray(0, 20)), /truncated pcap file header/);
    assert.throws(() => new PcapReader(pcapFile([], { linkType: 105 })), /unsupported link type 105/);
    assert.throws(() => new PcapReader(new Uint8Array(4)), PcapFormatError);
  });

  it("an empty capture (header only) reads as no packets, no damage", () => {
    const { pkts: got, reader } = readAll(pcapFile([]));
    assert.deepEqual(got, []);
    assert.equal(reader.damage, undefined);
  });
});

describe("pcap writer", () => {
  it("writes LINKTYPE_RAW microsecond little-endian files the reader (and tcpdump) read back", () => {
    const w = new PcapWriter({ initialBytes: 64 }); // small, so it has to grow
    const pkts: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) {
      const p = udp({ src: A, dst: WEB, sport: 1000 + i, dport: 53, payload: i });
      pkts.push(p);
      const buf = new Uint8Array(p.length + 8);
      buf.set(p, 8);
      w.write(buf, 8, p.length, T0 + i, i * 1000);
    }
    const file = w.bytes();
    const v = new DataView(file.buffer, file.byteOffset);
    assert.equal(v.getUint32(0, true), 0xa1b2c3d4);
    assert.equal(v.getUint32(20, true), LINKTYPE_RAW);
    const { pkts: got, ms } = readAll(file);
    assert.deepEqual(got, pkts);
    assert.equal(ms[7], (T0 + 7) * 1000 + 7);
  });

  it("cuts packets to the snaplen and keeps the length on the wire", () => {
    const w = new PcapWriter({ snaplen: 28 });
    const p = udp({ src: A, dst: WEB, sport: 1, dport: 2, payload: 100 });
    w.write(p, 0, p.length, T0, 0);
    const r = new PcapReader(w.bytes());
    assert.equal(r.next(), false);
    assert.equal(r.counters.snapTruncated, 1);
    assert.equal(r.capLen, 28);
    assert.equal(r.origLen, p.length);
  });
});

describe("memory BatchIo", () => {
  it("delivers queued packets in batches through the real datapath and keeps what is written", () => {
    const engine = new NatEngine({ ...replayConfig(GOLDEN_FLAGS).engine, hashSeed: TEST_HASH_SEED });
    const io = new MemoryIo({ batchSize: 4, headerBytes: 0 });
    const dp = new Datapath(engine, io, () => 5000);
    dp.start();
    try {
      for (let i = 0; i < 10; i++) io.push(udp({ src: A, dst: WEB, sport: 61100 + i, dport: 53 }));
      io.push(udp({ src: WEB, dst: POOL, sport: 53, dport: 62000 })); // unsolicited: dropped
      assert.equal(io.deliver(), 11);
      assert.equal(io.batches, 3);
      const out = io.writtenPackets();
      assert.equal(out.length, 10);
      for (const [i, p] of out.entries()) {
        assert.equal(u32(p, 12), ip(POOL));
        assert.equal(u16(p, 20), 61100 + i, "port preserved");
        assert.deepEqual(checksumProblems(p), []);
      }
      io.accepting = false;
      io.push(udp({ src: A, dst: WEB, sport: 61100, dport: 53 }));
      io.deliver();
      assert.equal(dp.stats.writeFailures, 1);
    } finally {
      dp.stop();
    }
  });

  it("puts a zeroed virtio-net header before each packet when asked", () => {
    const io = new MemoryIo({ headerBytes: 10 });
    const seen: number[] = [];
    io.start((buf, meta, count) => {
      for (let k = 0; k < count; k++) {
        seen.push(meta[2 * k + 1]);
        assert.ok(buf.subarray(meta[2 * k], meta[2 * k] + 10).every((x) => x === 0));
        assert.equal(buf[meta[2 * k] + 10], 0x45);
      }
    });
    io.push(udp({ src: A, dst: WEB, sport: 1, dport: 2 }));
    io.deliver();
    assert.deepEqual(seen, [10 + 32]);
  });
});

describe("replay", () => {
  it("golden: the scenario's input and output pcaps match the committed bytes", () => {
    const input = goldenInput();
    const cfg = replayConfig(GOLDEN_FLAGS);
    const { output, summary } = replayBytes(input, cfg.engine);
    const text = formatReplaySummary({
      ...summary,
      config: { inside: cfg.inside, addresses: [POOL], ports: "1-65535", filtering: cfg.run.filtering },
    });
    const files = {
      "replay-in.pcap": input,
      "replay-out.pcap": output,
      "replay-summary.txt": new TextEncoder().encode(text),
    };
    if (UPDATE) for (const [name, bytes] of Object.entries(files)) writeFileSync(join(GOLDEN, name), bytes);
    for (const [name, bytes] of Object.entries(files)) {
      const path = join(GOLDEN, name);
      assert.ok(existsSync(path), `${path} missing: run with UPDATE_GOLDEN=1 to create it`);
      const want = readFileSync(path);
      assert.ok(
        Buffer.compare(Buffer.from(bytes), want) === 0,
        `${name} differs from the committed golden file (if the change is intended: UPDATE_GOLDEN=1, then review the diff, e.g. tcpdump -r test/golden/${name} -nv)`,
      );
    }
  });

  it("golden output: every packet has valid checksums and the summary counts every case", () => {
    const { output, summary } = replayBytes(goldenInput(), replayConfig(GOLDEN_FLAGS).engine);
    const { pkts } = readAll(output);
    for (const p of pkts)
      assert.deepEqual(checksumProblems(p), [], `packet ${Buffer.from(p).toString("hex")}`);
    // Nothing written carries an inside source outward or the pool address inward.
    for (const p of pkts) {
      const src = u32(p, 12);
      const dst = u32(p, 16);
      const insideSrc = (src & 0xffffff00) === ip("192.168.0.0");
      const insideDst = (dst & 0xffffff00) === ip("192.168.0.0");
      assert.ok(insideSrc !== true || insideDst, "inside source leaked");
      assert.notEqual(dst, ip(POOL), "pool destination not translated");
    }
    assert.equal(summary.input.packets, 22);
    assert.deepEqual(summary.dropped, {
      filtered: 1,
      ip_bad_header_checksum: 1,
      no_mapping: 2,
      not_ours: 1,
      tcp_no_flow: 1,
    });
    assert.equal(summary.output.packets, 22 - 6);
    assert.equal(summary.output.released, 1);
    assert.equal(summary.translated.out + summary.translated.in, 15);
    assert.equal(summary.heldAtEnd, 0);
  });

  it("the same capture as Ethernet/nanosecond/big-endian gives the same output", () => {
    const cfg = replayConfig(GOLDEN_FLAGS).engine;
    const want = replayBytes(goldenInput(), cfg).output;
    const recs = goldenScenario();
    const variants = [
      pcapFile(recs, { be: true }),
      pcapFile(
        recs.map((r) => ({ ...r, frac: r.frac * 1000 })),
        { ns: true },
      ),
      pcapFile(
        recs.map((r) => ({ ...r, data: ethernet(r.data) })),
        { linkType: LINKTYPE_ETHERNET, be: true },
      ),
    ];
    for (const v of variants) assert.deepEqual(replayBytes(v, cfg).output, want);
  });

  it("damaged input never throws from the packet loop: random corruption and cuts", () => {
    const input = goldenInput();
    // A small table: a fresh engine per run, and the default 262 144 flows take ~10 ms to allocate.
    const cfg = { ...replayConfig(GOLDEN_FLAGS).engine, maxFlows: 1024, maxMappings: 1024 };
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let i = 0; i < 1000; i++) {
      const b = input.slice(0, 24 + rnd(input.length - 24 + 1));
      for (let k = rnd(8); k > 0; k--) if (b.length > 24) b[24 + rnd(b.length - 24)] = rnd(256);
      const { summary } = replayBytes(b, cfg);
      assert.ok(summary.input.packets <= 22);
    }
  });

  it("a capture of an offloading TUN: partial (pseudo-header) checksums are recognised and kept partial", () => {
    const full = udp({ src: A, dst: WEB, sport: 61003, dport: 9, payload: 20 });
    const partial = full.slice();
    const sum = (b: Uint8Array) => fold(pseudoHeaderSum(u32(b, 12), u32(b, 16), 17, b.length - 20));
    writeU16(partial, 26, sum(partial));
    assert.equal(holdsPartialChecksum(full, 0, full.length), false);
    assert.equal(holdsPartialChecksum(partial, 0, partial.length), true);
    const file = pcapFile([
      { sec: T0, frac: 0, data: partial },
      { sec: T0, frac: 1, data: full },
    ]);
    const { output, summary } = replayBytes(file, replayConfig(GOLDEN_FLAGS).engine);
    assert.equal(summary.input.partialChecksums, 1);
    const [p, f] = readAll(output).pkts;
    assert.equal(u32(p, 12), ip(POOL));
    assert.equal(u16(p, 26), sum(p), "still the pseudo-header sum, of the new addresses");
    assert.deepEqual(checksumProblems(f), []);
  });

  it("a record longer than any IPv4 packet: the packet at its start is replayed, the rest ignored", () => {
    const p = udp({ src: A, dst: WEB, sport: 61004, dport: 9 });
    const big = new Uint8Array(100_000).fill(0xee);
    big.set(p, 0);
    const { output, summary } = replayBytes(
      pcapFile([{ sec: T0, frac: 0, data: big }]),
      replayConfig(GOLDEN_FLAGS).engine,
    );
    assert.equal(summary.output.forwarded, 1);
    assert.equal(readAll(output).pkts[0].length, p.length);
  });

  it("config: defaults, flags, and errors naming the flag", () => {
    const d = replayConfig({});
    assert.deepEqual(d.inside, ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]);
    assert.deepEqual(d.engine.outside, [ip("198.51.100.100")]);
    assert.equal(d.engine.mode, "pool");
    const c = replayConfig({
      address: ["198.51.100.8/30"],
      ports: "20000-29999",
      filtering: "endpoint-independent",
    });
    assert.equal(c.engine.outside.length, 4);
    assert.deepEqual(c.engine.ports.udp, { first: 20000, last: 29999 });
    assert.equal(c.engine.filtering, "endpoint-independent");
    assert.throws(() => replayConfig({ inside: ["192.168.0.1/24"] }), /--inside.*host bits/);
    assert.throws(() => replayConfig({ address: ["nope"] }), /--address/);
    assert.throws(() => replayConfig({ ports: "5-6" }), /--ports/);
    assert.throws(() => replayConfig({ filtering: "open" }), /--filtering/);
  });
});

describe("masq replay (command)", () => {
  // A child process: the real exit code and streams, and nothing written over the test reporter.
  const MAIN = fileURLToPath(new URL("../../../src/cli/main.ts", import.meta.url));
  function cli(argv: string[]): { code: number; out: string; err: string } {
    const code = `const { main } = await import(${JSON.stringify(MAIN)}); process.exitCode = await main(process.argv.slice(1));`;
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", code, "--", ...argv],
      {
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
  }

  const dir = mkdtempSync(join(tmpdir(), "masq-pcap-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

  it("replays a file, prints the summary, and tcpdump reads the output", async () => {
    const inPath = join(dir, "in.pcap");
    const outPath = join(dir, "out.pcap");
    writeFileSync(inPath, goldenInput());
    const r = cli(["replay", inPath, outPath, "--inside", "192.168.0.0/24", "--address", POOL]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /packets in: +22/);
    assert.match(r.out, /no_mapping +2/);
    assert.deepEqual(readFileSync(outPath), readFileSync(join(GOLDEN, "replay-out.pcap")));
    const td = spawnSync("tcpdump", ["-r", outPath, "-n"], { encoding: "utf8" });
    if (td.error) return; // tcpdump not installed: the byte comparison above stands
    assert.equal(td.status, 0, td.stderr);
    const lines = td.stdout.trim().split("\n");
    assert.equal(lines.length, 16);
    assert.match(td.stdout, /IP 198\.51\.100\.100\.61001 > 203\.0\.113\.10\.53: /);
    assert.match(td.stdout, /IP 203\.0\.113\.1 > 192\.168\.0\.2: ICMP time exceeded/);
    assert.match(td.stdout, /203\.0\.113\.10\.80 > 192\.168\.0\.3\.61500: Flags \[S\.\]/);
    assert.doesNotMatch(td.stderr, /truncated|bogus/i);
  });

  it("--json prints the summary as JSON", async () => {
    const inPath = join(dir, "in.pcap");
    writeFileSync(inPath, goldenInput());
    const r = cli(["replay", inPath, join(dir, "o.pcap"), "--inside", "192.168.0.0/24", "--json"]);
    assert.equal(r.code, 0, r.err);
    const s = JSON.parse(r.out);
    assert.equal(s.input.packets, 22);
    assert.deepEqual(s.config.addresses, ["198.51.100.100"]);
  });

  it("exit 2 naming the problem: missing file, bad magic, unwritable output", async () => {
    let r = cli(["replay", join(dir, "nope.pcap"), join(dir, "o.pcap")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /nope\.pcap: cannot read the input pcap \(no such file or directory\)/);
    const junk = join(dir, "junk.pcap");
    writeFileSync(junk, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    r = cli(["replay", junk, join(dir, "o.pcap")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /junk\.pcap: bad pcap magic 0x47455420/);
    const good = join(dir, "good.pcap");
    writeFileSync(good, goldenInput());
    r = cli(["replay", good, join(dir, "no", "such", "dir.pcap")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /cannot write the output pcap \(no such file or directory\)/);
  });

  it("a truncated record: exit 2 naming it, with the packets before it replayed", async () => {
    const whole = goldenInput();
    const cut = join(dir, "cut.pcap");
    writeFileSync(cut, whole.subarray(0, whole.length - 3));
    const outPath = join(dir, "cut-out.pcap");
    const r = cli(["replay", cut, outPath, "--inside", "192.168.0.0/24"]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /cut\.pcap: truncated record: it claims \d+ bytes but the file has \d+ left \(record 21, byte \d+\); 21 packets before it were replayed/,
    );
    assert.match(r.out, /input damaged/);
    assert.equal(readAll(readFileSync(outPath)).pkts.length, 16);
  });

  it("bad flags are configuration errors (exit 2)", async () => {
    const r = cli(["replay", "a.pcap", "b.pcap", "--address", "300.1.1.1"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /configuration error: --address/);
  });

  it("runReplay reports through the given streams", async () => {
    const inPath = join(dir, "in2.pcap");
    writeFileSync(inPath, goldenInput());
    let out = "";
    const code = await runReplay(
      inPath,
      join(dir, "o2.pcap"),
      { inside: ["192.168.0.0/24"] },
      {
        stdout: (s) => {
          out += s;
        },
        stderr: () => {},
      },
    );
    assert.equal(code, 0);
    assert.match(out, /dropped: +6/);
  });
});
