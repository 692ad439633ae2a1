// The TUN's queue choice: the TypeScript model (steering-model.ts) on crafted packets, and the
// eBPF programs (steering-program.ts) run by the kernel on the same packets (BPF_PROG_TEST_RUN;
// skipped where the addon is not built or the kernel does not let this process load programs).
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { ipv6Worker } from "../../../src/datapath/shard-ip6.ts";
import {
  hostWorker,
  insideQueue,
  OVERRIDE_ENTRIES,
  outsideQueue,
  overrideKey,
  type SteeringPlan,
} from "../../../src/datapath/steering-model.ts";
import { insideProgram, outsideProgram } from "../../../src/datapath/steering-program.ts";
import { tryLoadAddon } from "../../../src/io/addon.ts";
import { parseIpv6 } from "../../../src/ipv6fw/addr6.ts";
import { DEFAULT_INTERFACE_PORTS } from "../../../src/nat/config.ts";
import { portOwner } from "../../../src/nat/port-slices.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../../../src/packet/ipv4.ts";
import { tcp as tcp6, udp as udp6 } from "../../helpers/ipv6-packets.ts";
import { datagram, icmpEcho, icmpError, ip, SYN, splitFragments, tcp, udp } from "../../helpers/packets.ts";
import { assertProperty } from "../../helpers/property.ts";
import { makeEngine, P, REMOTE, run } from "../nat/engine-helpers.ts";

const IFACE: SteeringPlan = {
  queues: 2,
  ports: { tcp: DEFAULT_INTERFACE_PORTS, udp: DEFAULT_INTERFACE_PORTS, icmp: DEFAULT_INTERFACE_PORTS },
};
const POOL_RANGE = { first: 1, last: 65535 };
const POOL: SteeringPlan = { queues: 3, ports: { tcp: POOL_RANGE, udp: POOL_RANGE, icmp: POOL_RANGE } };

const inQ = (b: Uint8Array, queues = 2) => insideQueue(b, 0, b.length, queues);
const outQ = (b: Uint8Array, plan = IFACE, o?: Uint32Array) => outsideQueue(b, 0, b.length, plan, o);

describe("steering model: from inside hosts", () => {
  it("a host's TCP, UDP, ICMP and fragments all go to its worker, by its address alone", () => {
    for (const host of ["192.168.0.7", "192.168.0.8", "10.1.2.3"]) {
      const w = hostWorker(ip(host), 2);
      const big = udp({ src: host, dst: REMOTE, sport: 5000, dport: 53, payload: 2000 });
      const packets = [
        tcp({ src: host, dst: REMOTE, sport: 40000, dport: 80, flags: SYN }),
        udp({ src: host, dst: "198.51.100.9", sport: 1, dport: 2 }),
        icmpEcho({ src: host, dst: REMOTE, id: 77 }),
        ...splitFragments(big, 1000),
      ];
      for (const p of packets) assert.equal(inQ(p), w, host);
    }
  });

  it("spreads hosts over the workers", () => {
    const counts = [0, 0, 0, 0];
    for (let i = 1; i < 255; i++) counts[hostWorker(ip(`192.168.0.${i}`), 4)]++;
    for (const c of counts) assert.ok(c > 30, `${counts}`);
  });

  it("other protocols and short packets: queue 0", () => {
    assert.equal(
      inQ(datagram({ src: "192.168.0.9", dst: REMOTE, proto: 132, payload: new Uint8Array(8) })),
      0,
    );
    assert.equal(inQ(new Uint8Array(12)), 0);
  });
});

describe("steering model: from outside", () => {
  it("TCP and UDP by the slice that owns the destination port; a port beyond the range: 0", () => {
    assert.equal(outQ(tcp({ src: REMOTE, dst: P, sport: 80, dport: 61000, flags: SYN })), 0);
    assert.equal(outQ(tcp({ src: REMOTE, dst: P, sport: 80, dport: 63267, flags: SYN })), 1);
    assert.equal(outQ(udp({ src: REMOTE, dst: P, sport: 53, dport: 65534 })), 1);
    assert.equal(outQ(udp({ src: REMOTE, dst: P, sport: 53, dport: 22 })), 0);
    // Pool mode: both classes sliced (1-1023 by 341, 1024-65535 by 21504).
    assert.equal(outQ(udp({ src: REMOTE, dst: P, sport: 53, dport: 700 }), POOL), 2);
    assert.equal(outQ(udp({ src: REMOTE, dst: P, sport: 53, dport: 30000 }), POOL), 1);
  });

  it("the override table wins for TCP and UDP (a forward's port goes to its host's worker)", () => {
    const o = new Uint32Array(OVERRIDE_ENTRIES);
    o[overrideKey(IPPROTO_TCP, 8080)] = 2; // worker 1
    assert.equal(outQ(tcp({ src: REMOTE, dst: P, sport: 9, dport: 8080, flags: SYN }), IFACE, o), 1);
    assert.equal(outQ(udp({ src: REMOTE, dst: P, sport: 9, dport: 8080 }), IFACE, o), 0, "UDP's own entry");
  });

  it("ICMP echo by the identifier's slice; an ICMP error by the quoted packet's source port", () => {
    assert.equal(outQ(icmpEcho({ src: REMOTE, dst: P, type: 0, id: 64000 })), 1);
    assert.equal(outQ(icmpEcho({ src: REMOTE, dst: P, type: 0, id: 61001 })), 0);
    const sent = udp({ src: P, dst: REMOTE, sport: 64000, dport: 53 });
    assert.equal(outQ(icmpError({ from: REMOTE, to: P, type: 3, code: 3, quoted: sent, quoteLen: 28 })), 1);
    const ping = icmpEcho({ src: P, dst: REMOTE, id: 61002 });
    assert.equal(
      outQ(icmpError({ from: "192.0.2.1", to: P, type: 11, code: 0, quoted: ping, quoteLen: 28 })),
      0,
    );
  });

  it("a datagram's fragments, the first included, all meet on one worker", () => {
    for (let id = 1; id < 40; id++) {
      const frags = splitFragments(
        udp({ src: REMOTE, dst: P, sport: 53, dport: 61000, payload: 3000 }),
        1000,
        id,
      );
      const qs = new Set(frags.map((f) => outQ(f)));
      assert.equal(qs.size, 1, `id ${id}`);
    }
  });

  it("a PPTP call's outside call id is of its worker's slice, so the server's GRE steers back to it", () => {
    const gre = (callId: number) => {
      const g = new Uint8Array(16);
      g[0] = 0x30; // key present, version 1 (RFC 2637)
      g[1] = 0x01;
      g[2] = 0x88;
      g[3] = 0x0b;
      g[6] = callId >> 8;
      g[7] = callId & 255;
      return datagram({ src: REMOTE, dst: P, proto: 47, payload: g });
    };
    for (const w of [0, 1]) {
      const e = makeEngine({ portSlice: { index: w, count: 2 } });
      const f = e.pptpCall(ip("192.168.0.20"), 5, ip(REMOTE), 0);
      assert.ok(f >= 0, `refused: ${f}`);
      const id = e.flowView(f).outside.port;
      assert.equal(outQ(gre(id)), w, `call id ${id} on worker ${w}`);
      assert.equal(w === 0, id === 5, "the host's own id where its slice has it");
    }
    const one = makeEngine();
    assert.equal(one.flowView(one.pptpCall(ip("192.168.0.20"), 40000, ip(REMOTE), 0)).outside.port, 40000);
  });

  it("a mapping made by worker w's engine shard gets replies that steer back to w", () => {
    for (let h = 1; h < 30; h++) {
      const host = `192.168.0.${h}`;
      const w = hostWorker(ip(host), 2);
      const e = makeEngine({ mode: "interface", ports: IFACE.ports, portSlice: { index: w, count: 2 } });
      const out = run(e, udp({ src: host, dst: REMOTE, sport: 64500 - h, dport: 53 })).out;
      const port = (out[20] << 8) | out[21];
      assert.equal(portOwner(DEFAULT_INTERFACE_PORTS, false, port, 2), w, `port ${port} of worker ${w}`);
      assert.equal(outQ(udp({ src: REMOTE, dst: P, sport: 53, dport: port })), w);
    }
  });
});

describe("steering model: IPv6 (the IPv6 firewall's traffic)", () => {
  const hosts = ["2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4", "2001:db8:1::10", "2001:db8:1:0:a::7"];
  const remote = "2001:db8:ffff::10";

  it("a host's flows, both ways, meet on one worker: its address from inside, the same from outside", () => {
    for (const queues of [2, 3])
      for (const h of hosts) {
        const outbound = inQ(tcp6(h, 40000, remote, 80, SYN), queues);
        const plan = { ...IFACE, queues };
        assert.equal(outQ(tcp6(remote, 80, h, 40000, SYN | 0x10), plan), outbound, h);
        assert.equal(inQ(udp6(h, 5000, remote, 53), queues), outbound, `${h} UDP`);
        assert.equal(outQ(udp6(remote, 53, h, 5000), plan), outbound, `${h} UDP reply`);
      }
  });

  it("the PCP server's pinholes go to the worker the steering gives the host (ipv6Worker)", () => {
    for (const queues of [2, 3])
      for (const h of hosts)
        assert.equal(ipv6Worker(parseIpv6(h) as Uint8Array, queues), inQ(udp6(h, 1, remote, 2), queues), h);
  });

  it("spreads IPv6 hosts over the workers; a truncated header goes to queue 0", () => {
    const seen = new Set<number>();
    for (let i = 1; i < 40; i++) seen.add(inQ(udp6(`2001:db8:1::${i.toString(16)}`, 1, remote, 2)));
    assert.deepEqual([...seen].sort(), [0, 1]);
    assert.equal(inQ(udp6(hosts[0], 1, remote, 2).subarray(0, 20)), 0);
  });
});

/** Packets of every kind the programs branch on, with random fields and lengths (truncated too). */
const packetArb = fc
  .record({
    kind: fc.constantFrom("tcp", "udp", "echo", "error", "frag", "gre", "other", "v6"),
    src: fc.integer({ min: 0, max: 0xffffffff }),
    dst: fc.integer({ min: 0, max: 0xffffffff }),
    port: fc.integer({ min: 0, max: 65535 }),
    id: fc.integer({ min: 0, max: 65535 }),
    // The kernel's test run takes no IPv4 packet shorter than a header (nor routes one into a TUN).
    cut: fc.integer({ min: 20, max: 80 }),
  })
  .map(({ kind, src, dst, port, id, cut }) => {
    const a = (n: number) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
    const base = { src: a(src), dst: a(dst), id };
    let p: Uint8Array;
    if (kind === "tcp") p = tcp({ ...base, sport: 80, dport: port, flags: SYN });
    else if (kind === "udp") p = udp({ ...base, sport: 53, dport: port });
    else if (kind === "echo") p = icmpEcho({ src: base.src, dst: base.dst, type: 0, id: port });
    else if (kind === "error") {
      const q = (id & 1 ? tcp : udp)({ src: base.dst, dst: base.src, sport: port, dport: 80, flags: SYN });
      p = icmpError({ from: base.src, to: base.dst, type: 3, code: 4, quoted: q, quoteLen: 28 });
    } else if (kind === "frag") p = udp({ ...base, sport: 1, dport: port, mf: true });
    else if (kind === "gre") {
      const g = new Uint8Array(16);
      g[6] = port >> 8;
      g[7] = port & 255;
      p = datagram({ ...base, proto: 47, payload: g });
    } else if (kind === "v6") {
      const h = (n: number) => (n >>> 16).toString(16) + ":" + (n & 0xffff).toString(16);
      p = udp6(
        `2001:db8:${h(src)}::${(id || 1).toString(16)}`,
        1,
        `2001:db8:${h(dst)}::${port.toString(16)}`,
        2,
      );
    } else p = datagram({ ...base, proto: 132, payload: new Uint8Array(12) });
    return cut < p.length ? p.subarray(0, cut) : p;
  });

const addon = tryLoadAddon();
let bpfWhy = addon ? "" : "the addon is not built";
let probe = -1;
if (addon)
  try {
    probe = addon.bpfLoadSocketFilter(insideProgram(2));
  } catch (err) {
    bpfWhy = `this process may not load BPF programs: ${(err as Error).message}`;
  }

describe("steering programs in the kernel agree with the model", { skip: bpfWhy || false }, () => {
  const mod = addon as NonNullable<typeof addon>;
  const fds: number[] = [probe];
  after(() => {
    for (const fd of fds) mod.closeFd(fd);
  });
  const load = (insns: Uint8Array) => {
    const fd = mod.bpfLoadSocketFilter(insns);
    fds.push(fd);
    return fd;
  };

  it("the inside program, for 2 and 3 queues", () => {
    for (const queues of [2, 3]) {
      const prog = load(insideProgram(queues));
      assertProperty(
        fc.property(packetArb, (p) => {
          assert.equal(mod.bpfTestRun(prog, p), insideQueue(p, 0, p.length, queues));
        }),
        300,
      );
    }
  });

  it("the outside program, interface and pool ranges, with overrides set", () => {
    for (const plan of [IFACE, POOL]) {
      const map = mod.bpfArrayMap(OVERRIDE_ENTRIES);
      fds.push(map);
      const overrides = new Uint32Array(OVERRIDE_ENTRIES);
      for (const [proto, port, w] of [
        [IPPROTO_TCP, 8080, 1],
        [IPPROTO_UDP, 61005, 1],
        [IPPROTO_TCP, 64000, 0],
      ]) {
        mod.bpfMapSet(map, overrideKey(proto, port), w + 1);
        overrides[overrideKey(proto, port)] = w + 1;
      }
      const prog = load(outsideProgram(plan, map));
      const fixed = [
        tcp({ src: REMOTE, dst: P, sport: 1, dport: 8080, flags: SYN }),
        udp({ src: REMOTE, dst: P, sport: 1, dport: 61005 }),
        tcp({ src: REMOTE, dst: P, sport: 1, dport: 64000, flags: SYN }),
      ];
      for (const p of fixed)
        assert.equal(mod.bpfTestRun(prog, p), outsideQueue(p, 0, p.length, plan, overrides));
      assertProperty(
        fc.property(packetArb, (p) => {
          assert.equal(mod.bpfTestRun(prog, p), outsideQueue(p, 0, p.length, plan, overrides));
        }),
        500,
      );
    }
  });
});
