// The snapshot of `masq stop --keep-state`: an engine restored from it translates every flow as
// the engine it was taken from would have, on a clock that moved on by the time masq was down;
// a corrupt snapshot, one from another version or another configuration is refused, naming why.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { DEFAULT_ALG_CONFIG } from "../../../src/alg/config.ts";
import { AlgRegistry } from "../../../src/alg/registry.ts";
import { algImageParts } from "../../../src/alg/snapshot.ts";
import { defaultRunConfig } from "../../../src/control/config.ts";
import {
  configHash,
  masqVersion,
  readKeptState,
  restoreKeptState,
  SnapshotRefused,
  writeSnapshot,
} from "../../../src/control/keep-state.ts";
import { restoreAtStart } from "../../../src/control/restart.ts";
import { SNAPSHOT_FORMAT, type SnapshotHeader } from "../../../src/control/snapshot-file.ts";
import { layoutFingerprint, stateLayout, stateLayoutFingerprint } from "../../../src/control/state-layout.ts";
import { parseIpv6 } from "../../../src/ipv6fw/addr6.ts";
import { IPPROTO_TCP, IPV6_TIMEOUTS, Ip6Filter } from "../../../src/ipv6fw/filter.ts";
import { defaultEngineConfig, type EngineConfig } from "../../../src/nat/config.ts";
import { DROP, FORWARD, NatEngine, REPLY } from "../../../src/nat/engine.ts";
import { SIDE_INSIDE, SIDE_OUTSIDE } from "../../../src/nat/verdicts.ts";
import { tcp as tcp6, udp as udp6 } from "../../helpers/ipv6-packets.ts";
import { ACK, icmpEcho, ip, PSH, SYN, tcp, u16, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { withHeader } from "../../helpers/snapshot-header.ts";
import { CLIENT_ISN, openOutbound, P, REMOTE, SERVER_ISN } from "../nat/engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";
const FTP = "203.0.113.21";

function engineConfig(over: Partial<EngineConfig> = {}): EngineConfig {
  return defaultEngineConfig({
    inside: [{ addr: ip("192.168.0.0"), len: 24 }],
    outside: [ip(P)],
    maxFlows: 4096,
    filtering: "address-port-dependent",
    ...over,
  });
}

/** An engine with the ALGs attached; the hash seed is drawn at random unless given. */
function build(over: Partial<EngineConfig> = {}): { e: NatEngine; algs: AlgRegistry } {
  const e = new NatEngine(engineConfig(over));
  const algs = new AlgRegistry(e, DEFAULT_ALG_CONFIG);
  e.attachAlg(algs);
  return { e, algs };
}

function go(e: NatEngine, pkt: Uint8Array, nowMs: number): { verdict: number; out: Uint8Array } {
  const buf = new Uint8Array(pkt.length + 64);
  buf.set(pkt, 37);
  const verdict = e.process(buf, 37, pkt.length, nowMs);
  const out = verdict === REPLY ? e.replyBuf.slice(0, e.outLen) : buf.slice(37, 37 + e.outLen);
  return { verdict, out };
}

const T0 = 5_000;

/**
 * A populated engine: established TCP connections of two hosts, UDP and ICMP flows, a forward, and
 * an FTP control connection whose PORT command was rewritten (a sequence delta and an expectation).
 */
function populate(e: NatEngine): { tcpPorts: number[]; ftpOut: number } {
  const tcpPorts = [
    openOutbound(e, A, 40000, REMOTE, 443, T0),
    openOutbound(e, A, 40001, REMOTE, 443, T0),
    openOutbound(e, B, 40000, REMOTE, 22, T0),
  ];
  for (let i = 0; i < 40; i++)
    go(e, udp({ src: i % 2 ? A : B, dst: REMOTE, sport: 5000 + i, dport: 53 }), T0);
  go(e, icmpEcho({ src: A, dst: REMOTE, id: 77, seq: 1 }), T0);
  e.pinMapping({ proto: "tcp", inAddr: ip(B), inPort: 80, outPort: 8080, origin: "forward" });
  const syn = go(e, tcp({ src: A, dst: FTP, sport: 41000, dport: 21, flags: SYN, seq: 999 }), T0);
  const ftpOut = u16(syn.out, 20);
  go(e, tcp({ src: FTP, dst: P, sport: 21, dport: ftpOut, flags: SYN | ACK, seq: 4999, ack: 1000 }), T0);
  const port = "PORT 192,168,0,2,156,65\r\n";
  const r = go(e, ftpSegment(1000, port), T0);
  assert.equal(r.verdict, REPLY, "the PORT command was rebuilt with another length");
  return { tcpPorts, ftpOut };
}

function ftpSegment(seq: number, text: string): Uint8Array {
  return tcp({
    src: A,
    dst: FTP,
    sport: 41000,
    dport: 21,
    flags: ACK | PSH,
    seq,
    ack: 5000,
    payload: Buffer.from(text, "latin1"),
  });
}

/** The server's acknowledgement of the first connection's handshake, to its outside port. */
function serverAck(outPort: number): Uint8Array {
  return tcp({
    src: REMOTE,
    dst: P,
    sport: 443,
    dport: outPort,
    flags: ACK,
    seq: SERVER_ISN + 1,
    ack: CLIENT_ISN + 1,
  });
}

/** The packets every kept flow carries next, both ways. */
function followUps(tcpPorts: number[], ftpOut: number): Uint8Array[] {
  const data = (src: string, sport: number, dport: number) =>
    tcp({
      src,
      dst: REMOTE,
      sport,
      dport,
      flags: ACK | PSH,
      seq: CLIENT_ISN + 1,
      ack: SERVER_ISN + 1,
      payload: 10,
    });
  const reply = (sport: number, dport: number) =>
    tcp({ src: REMOTE, dst: P, sport, dport, flags: ACK, seq: SERVER_ISN + 1, ack: CLIENT_ISN + 11 });
  return [
    data(A, 40000, 443),
    reply(443, tcpPorts[0]),
    data(A, 40001, 443),
    reply(443, tcpPorts[1]),
    data(B, 40000, 22),
    reply(22, tcpPorts[2]),
    // The sequence delta of the rewritten PORT shifts the next segment and the server's ack.
    ftpSegment(1000 + "PORT 192,168,0,2,156,65\r\n".length, "RETR x\r\n"),
    tcp({ src: FTP, dst: P, sport: 21, dport: ftpOut, flags: ACK, seq: 5000, ack: 1034 }),
    udp({ src: B, dst: REMOTE, sport: 5000, dport: 53 }),
    udp({ src: REMOTE, dst: P, sport: 53, dport: 5001 }),
    icmpEcho({ src: A, dst: REMOTE, id: 77, seq: 2 }),
    // A new connection to the forward, and a new outbound flow (the allocator's state).
    tcp({ src: REMOTE, dst: P, sport: 7000, dport: 8080, flags: SYN }),
    udp({ src: A, dst: REMOTE, sport: 6000, dport: 53 }),
  ];
}

const dir = mkdtempSync(join(tmpdir(), "masq-snapshot-"));

/** The reason a snapshot is refused for. */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof SnapshotRefused, String(err));
    return err.reason;
  }
  assert.fail("not refused");
}
after(() => rmSync(dir, { recursive: true, force: true }));

function roundTrip(
  from: { e: NatEngine; algs: AlgRegistry },
  hash = "h",
): { e: NatEngine; algs: AlgRegistry } {
  const file = join(dir, `rt-${Math.random()}.snapshot`);
  writeSnapshot(file, from.e, from.algs, { configHash: hash, clockMs: T0 });
  const kept = readKeptState(file, hash);
  assert.ok(kept);
  // Another hash seed than the engine it was taken from: the snapshot brings its own.
  const to = build({ portSeed: kept.header.portSeed, hashSeed: 0x1234, maxFlows: from.e.flowTable.capacity });
  restoreKeptState(file, kept, to.e, to.algs);
  return to;
}

describe("snapshot of the engine (masq stop --keep-state)", () => {
  it("is refused when a reload turned an ALG off since the start (flows name their ALG by an id)", () => {
    const e = new NatEngine(engineConfig());
    const algs = new AlgRegistry(e, structuredClone(DEFAULT_ALG_CONFIG));
    e.attachAlg(algs);
    assert.doesNotThrow(() => e.captureState(algImageParts(algs)));
    const next = structuredClone(DEFAULT_ALG_CONFIG) as unknown as Record<string, { enabled?: boolean }>;
    const first = Object.keys(next).find((k) => next[k]?.enabled === true);
    assert.ok(first);
    next[first].enabled = false;
    algs.reconfigure(next as unknown as typeof DEFAULT_ALG_CONFIG);
    assert.throws(() => e.captureState(algImageParts(algs)), /reload turned ALGs on or off/);
  });

  it("a restored engine translates every flow, both ways, exactly as the one it was taken from", () => {
    const old = build({ hashSeed: 0x9999 });
    const { tcpPorts, ftpOut } = populate(old.e);
    const restored = roundTrip(old);
    assert.equal(restored.e.flowTable.count, old.e.flowTable.count);
    assert.deepEqual(restored.e.pinList(), old.e.pinList());
    assert.deepEqual(restored.e.flows(), old.e.flows());
    for (const pkt of followUps(tcpPorts, ftpOut)) {
      const a = go(old.e, pkt, T0 + 1000);
      const b = go(restored.e, pkt, T0 + 1000);
      assert.equal(b.verdict, a.verdict);
      assert.equal(a.verdict === FORWARD || a.verdict === REPLY, true);
      assert.deepEqual(b.out, a.out);
    }
    assert.deepEqual(restored.e.stats(), old.e.stats());
  });

  it("random tables round-trip: same flows, same translations", () => {
    assertProperty(
      fc.property(
        fc.array(
          fc.record({ host: fc.integer({ min: 2, max: 30 }), sport: fc.integer({ min: 1024, max: 65535 }) }),
          {
            minLength: 1,
            maxLength: 60,
          },
        ),
        (flows) => {
          const old = build({ hashSeed: 7, maxFlows: 1024 });
          for (const f of flows)
            go(old.e, udp({ src: `192.168.0.${f.host}`, dst: REMOTE, sport: f.sport, dport: 53 }), T0);
          const restored = roundTrip(old);
          for (const f of flows) {
            const pkt = udp({ src: `192.168.0.${f.host}`, dst: REMOTE, sport: f.sport, dport: 53 });
            assert.deepEqual(go(restored.e, pkt, T0).out, go(old.e, pkt, T0).out);
          }
          assert.deepEqual(restored.e.flows(), old.e.flows());
        },
      ),
      20,
    );
  });

  it("timers move on by the time masq was down: flows that expired meanwhile are gone, the others stay", () => {
    const old = build();
    const { tcpPorts } = populate(old.e);
    const restored = roundTrip(old);
    // Down for 10 minutes: UDP (300 s) and ICMP (60 s) flows expired, established TCP (7440 s) did not.
    restored.e.tick(T0 + 600_000);
    const protocols = new Set(restored.e.flows().map((f) => f.protocol));
    assert.deepEqual([...protocols], ["tcp"]);
    const back = go(restored.e, serverAck(tcpPorts[0]), T0 + 600_000);
    assert.equal(back.verdict, FORWARD);
  });

  it("at start the engine's clock continues the stopped one's, moved on by the downtime", () => {
    const old = build();
    const { tcpPorts } = populate(old.e);
    const file = join(dir, "clock.snapshot");
    writeSnapshot(file, old.e, old.algs, { configHash: "h", clockMs: T0 });
    const kept = readKeptState(file, "h");
    assert.ok(kept);
    const to = build({ portSeed: kept.header.portSeed });
    const lines: string[] = [];
    const log = {
      info: (_o: object, m: string) => lines.push(m),
      warn: (_o: object, m: string) => lines.push(m),
    };
    // This process's clock reads 50 ms; masq was down for 10 minutes.
    const offset = restoreAtStart(file, { ...kept, downMs: 600_000 }, to.e, to.algs, () => 50, log as never);
    assert.equal(offset, T0 + 600_000 - 50);
    assert.deepEqual(
      [...new Set(to.e.flows().map((f) => f.protocol))],
      ["tcp"],
      "UDP and ICMP expired while down",
    );
    assert.equal(
      to.e.pinList().filter((p) => p.origin === "forward").length,
      0,
      "forwards are pinned anew by the new run",
    );
    assert.match(lines.join("\n"), /state restored from the snapshot/);
    const back = go(to.e, serverAck(tcpPorts[0]), 50 + (offset ?? 0));
    assert.equal(back.verdict, FORWARD);
  });

  it("the IPv6 filter's table is kept: an admitted flow's reply is still admitted after the restore", () => {
    const IN6 = "2001:db8:1::10";
    const OUT6 = "2001:db8:2::10";
    const ip6 = () => new Ip6Filter({ capacity: 256, filtering: "address-port-dependent" });
    const pass = (f: Ip6Filter, p: Uint8Array, side: number, now: number) =>
      f.process(p, 0, p.length, now, side);
    const old = build();
    const f = ip6();
    // RFC 6092: an outbound TCP connection and a UDP exchange open flows; a PCP pinhole too.
    pass(f, tcp6(IN6, 40000, OUT6, 443, SYN), SIDE_INSIDE, T0);
    assert.equal(pass(f, tcp6(OUT6, 443, IN6, 40000, SYN | ACK), SIDE_OUTSIDE, T0), FORWARD);
    pass(f, tcp6(IN6, 40000, OUT6, 443, ACK), SIDE_INSIDE, T0);
    pass(f, udp6(IN6, 5000, OUT6, 53), SIDE_INSIDE, T0);
    f.openPinhole(parseIpv6(IN6) as Uint8Array, IPPROTO_TCP, 22, T0, T0 + 3_600_000);
    const file = join(dir, "ipv6.snapshot");
    writeSnapshot(file, old.e, old.algs, { configHash: "h6", clockMs: T0, ip6: f });
    const kept = readKeptState(file, "h6");
    assert.ok(kept);
    const to = build({ portSeed: kept.header.portSeed });
    const g = ip6();
    const log = { info: () => undefined, warn: () => undefined };
    // Down for 10 minutes: the UDP flow (2 min) expired, the established TCP one (2 h 4 min) did not.
    const offset = restoreAtStart(
      file,
      { ...kept, downMs: 600_000 },
      to.e,
      to.algs,
      () => 50,
      log as never,
      g,
    );
    assert.ok(offset !== undefined);
    const now = 50 + offset;
    assert.equal(
      pass(g, tcp6(OUT6, 443, IN6, 40000, ACK), SIDE_OUTSIDE, now),
      FORWARD,
      "the reply is admitted",
    );
    assert.equal(
      pass(g, tcp6(OUT6, 443, IN6, 40001, ACK), SIDE_OUTSIDE, now),
      DROP,
      "unsolicited still is not",
    );
    assert.ok(now - T0 > IPV6_TIMEOUTS.udp * 1000);
    assert.equal(pass(g, udp6(OUT6, 53, IN6, 5000), SIDE_OUTSIDE, now), DROP, "UDP expired while down");
    assert.equal(
      pass(g, tcp6(OUT6, 50000, IN6, 22, SYN), SIDE_OUTSIDE, now),
      DROP,
      "PCP pinholes are asked again",
    );
    assert.equal(g.stats.flowsCreated, 2, "the counters are kept");
    // A table of another size does not fit: refused, and the filter is left empty.
    writeSnapshot(file, old.e, old.algs, { configHash: "h6", clockMs: T0, ip6: f });
    const again = readKeptState(file, "h6");
    assert.ok(again);
    const other = build({ portSeed: again.header.portSeed });
    const small = new Ip6Filter({ capacity: 64, filtering: "address-port-dependent" });
    assert.match(
      refusal(() => restoreKeptState(file, again, other.e, other.algs, small)),
      /do not fit/,
    );
    assert.equal(small.liveFlows(T0), 0);
  });

  it("the file is written whole and only the pages that hold data are stored", () => {
    const { e, algs } = build({ maxFlows: 65536 });
    populate(e);
    const file = join(dir, "size.snapshot");
    const w = writeSnapshot(file, e, algs, { configHash: "h", clockMs: T0 });
    assert.equal(readFileSync(file).length, w.bytes);
    assert.ok(w.bytes < e.memoryBytes() / 2, `${w.bytes} bytes for ${e.memoryBytes()} of tables`);
  });
});

describe("a snapshot that does not fit is refused, naming why", () => {
  const { e, algs } = build();
  populate(e);
  const file = join(dir, "refuse.snapshot");
  writeSnapshot(file, e, algs, { configHash: "good", clockMs: T0 });
  const bytes = readFileSync(file);

  it("a flipped bit anywhere: corrupt (checksum)", () => {
    for (const at of [20, Math.floor(bytes.length / 2), bytes.length - 1]) {
      const bad = Buffer.from(bytes);
      bad[at] ^= 0x40;
      writeFileSync(file, bad);
      assert.match(
        refusal(() => readKeptState(file, "good")),
        /corrupt: checksum mismatch/,
      );
    }
  });

  it("cut short, or not a snapshot at all", () => {
    writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    assert.match(
      refusal(() => readKeptState(file, "good")),
      /corrupt/,
    );
    writeFileSync(file, "hello");
    assert.match(
      refusal(() => readKeptState(file, "good")),
      /not a masq snapshot/,
    );
  });

  it("another configuration", () => {
    writeFileSync(file, bytes);
    assert.match(
      refusal(() => readKeptState(file, "other")),
      /another configuration/,
    );
  });

  const reheader = (change: Partial<SnapshotHeader>) => writeFileSync(file, withHeader(bytes, change));

  it("another masq version with the same state layout: taken up (an upgrade keeps the table)", () => {
    reheader({ masqVersion: "0.0.1-other" });
    const kept = readKeptState(file, "good");
    assert.ok(kept, "accepted");
    assert.equal(kept.header.masqVersion, "0.0.1-other");
    const to = build({ portSeed: kept.header.portSeed });
    restoreKeptState(file, kept, to.e, to.algs);
    assert.deepEqual(to.e.flows(), e.flows(), "every flow came back");
  });

  it("another state layout: refused, naming both versions and layouts", () => {
    reheader({ masqVersion: "0.0.1-other", stateLayout: "0123456789abcdef" });
    assert.match(
      refusal(() => readKeptState(file, "good")),
      new RegExp(
        `^state layout changed \\(written by masq 0\\.0\\.1-other with layout 0123456789abcdef, this is masq ${masqVersion().replaceAll(".", "\\.")} with layout ${stateLayoutFingerprint()}\\)$`,
      ),
    );
  });

  it("another format version: refused as a changed layout", () => {
    const format = Buffer.from(bytes);
    format.writeUInt32LE(99, 8);
    writeFileSync(file, format);
    assert.match(
      refusal(() => readKeptState(file, "good")),
      new RegExp(`state layout changed \\(snapshot format 99, this masq reads format ${SNAPSHOT_FORMAT}\\)`),
    );
  });

  it("tables of another size, even under the same hash: they do not fit", () => {
    writeFileSync(file, bytes);
    const kept = readKeptState(file, "good");
    assert.ok(kept);
    const small = build({ maxFlows: 1024 });
    assert.match(
      refusal(() => restoreKeptState(file, kept, small.e, small.algs)),
      /do not fit/,
    );
    assert.equal(small.e.flowTable.count, 0, "nothing was written into the engine");
  });

  it("the configuration hash covers what decides the tables and the translation, not the timeouts", () => {
    const cfg = defaultRunConfig();
    const base = configHash(cfg, engineConfig());
    assert.equal(configHash(cfg, engineConfig({ portSeed: 1, hashSeed: 2 })), base);
    assert.equal(
      configHash(cfg, engineConfig({ timeouts: { ...engineConfig().timeouts, udpSec: 999 } })),
      base,
    );
    assert.notEqual(configHash(cfg, engineConfig({ maxFlows: 8192 })), base);
    assert.notEqual(configHash(cfg, engineConfig({ outside: [ip("198.51.100.3")] })), base);
    assert.notEqual(configHash(cfg, engineConfig({ filtering: "endpoint-independent" })), base);
    assert.notEqual(configHash({ ...cfg, tun: "other0" }, engineConfig()), base);
    // The IPv6 filter's table is in the image when it is on: on or off and its size decide.
    const v6 = { ...cfg, ipv6: { ...cfg.ipv6, firewall: true } };
    assert.notEqual(configHash(v6, engineConfig()), base);
    assert.notEqual(
      configHash({ ...v6, ipv6: { ...v6.ipv6, maxFlows: 1024 } }, engineConfig()),
      configHash(v6, engineConfig()),
    );
  });
});

describe("the state-layout fingerprint (what decides whether a snapshot can be read back)", () => {
  it("is the same in every build of one code, whatever the seeds", () => {
    assert.match(stateLayoutFingerprint(), /^[0-9a-f]{16}$/);
    assert.equal(layoutFingerprint(stateLayout()), stateLayoutFingerprint());
  });

  it("covers the records' words and offsets, the kept classes' fields and every leaf of the image", () => {
    const layout = stateLayout() as {
      flowRecord: Record<string, number>;
      mappingRecord: Record<string, number>;
      tcpRecord: Record<string, number>;
      pin: Record<string, string>;
      classes: Record<string, Record<string, unknown>>;
      image: string[];
    };
    assert.equal(layout.flowRecord.FLOW_WORDS, 16);
    assert.equal(layout.mappingRecord.MAPPING_WORDS, 4);
    assert.equal(layout.tcpRecord.TCP_WORDS, 8);
    assert.deepEqual(Object.keys(layout.pin).sort(), [
      "expiresAtSec",
      "id",
      "mapping",
      "note",
      "oneShot",
      "origin",
      "remoteAddr",
    ]);
    assert.ok("adj" in (layout.classes.StreamDir ?? {}), "a class's nested fields");
    assert.ok(layout.image.some((l) => /^engine\.flowTable\.u32:Uint32Array\[\d+\]$/.test(l)));
    assert.ok(layout.image.some((l) => l.startsWith("alg.")));
    assert.ok(layout.image.some((l) => l.startsWith("ip6.")));
    assert.ok(
      !layout.image.some((l) => l.startsWith("engine.config")),
      "the configuration is not the layout",
    );
    // Any of them changed changes the fingerprint.
    const base = layoutFingerprint(layout);
    const changed = (f: (l: typeof layout) => void) => {
      const l = structuredClone(layout);
      f(l);
      return layoutFingerprint(l);
    };
    assert.notEqual(
      changed((l) => (l.flowRecord.F_ALG = 9)),
      base,
    );
    assert.notEqual(
      changed((l) => (l.tcpRecord.FLAGS = 5)),
      base,
    );
    assert.notEqual(
      changed((l) => delete l.pin.note),
      base,
    );
    assert.notEqual(
      changed((l) => l.image.push("engine.extra:number")),
      base,
    );
    assert.notEqual(
      changed(
        (l) =>
          (l.image = l.image.map((x) =>
            x.replace(/^(engine\.tcp\.words:Uint32Array)\[(\d+)\]$/, (_, a, n) => `${a}[${Number(n) + 256}]`),
          )),
      ),
      base,
      "a record grown by a word",
    );
  });
});

// The ALGs' part of the image names its classes; keep the test honest about what it covers.
it("the ALGs' per-flow records are part of the image", () => {
  const { e, algs } = build();
  populate(e);
  const parts = algImageParts(algs);
  assert.ok(Object.keys(parts.classes).includes("SeqAdj"));
});
