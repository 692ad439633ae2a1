// End to end: UDP segmentation offload (USO). With offloads on (the default) masq asks the kernel
// for TUN_F_USO4|TUN_F_USO6 besides TSO, so a UDP sender using UDP_SEGMENT (QUIC stacks do) hands
// the TUN one super-packet of up to 64 KB instead of each datagram. masq translates it in place
// and writes it back with its virtio-net header; the kernel then cuts it into datagrams. The
// gateway's outgoing devices have checksum offload turned off (ethtool -K … tx off), so the kernel
// finishes every checksum in software before the datagrams leave and the receiving host checks
// them: a wrong partial checksum from masq would show as UdpInCsumErrors and lost datagrams.
// Both directions; the datagrams' contents say which they are and where each byte belongs.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const GSO = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "udp-gso.py");
const DATAGRAMS = 96;
const SIZE = 1200;

/** UDP checksum errors the namespace's stack counted (/proc/net/snmp, Udp: InCsumErrors). */
async function udpChecksumErrors(net: MasqNetwork, ns: string): Promise<number> {
  const lines = (await net.lab.run(ns, ["cat", "/proc/net/snmp"]))
    .split("\n")
    .filter((l) => l.startsWith("Udp:"));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/);
  return Number(values[names.indexOf("InCsumErrors")]);
}

describe("UDP segmentation offload (USO) through masq", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;

  before(async () => {
    net = await buildMasqNetwork({ prefix: "masquso", mode: "interface" });
    // Checksums finished in software on the way out of the gateway, both ways (see above).
    for (const dev of [net.gate.wan, ...net.gate.lanPorts])
      await net.lab.run(net.gate.ns, ["ethtool", "-K", dev, "tx", "off"]);
    masq = await startMasq(net);
  });

  after(async () => {
    try {
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
    }
  });

  /**
   * DATAGRAMS datagrams from A-box to an echo on the Internet host, which sends them back (as
   * super-packets); with `pauseMasq`, masq is stopped for a second from just before A-box sends, so
   * the datagrams wait in the TUN's queue and masq reads them as one batch, as it does under load.
   * Checks what both ends received; masq's counters after it, and a description for failures.
   */
  async function exchange(port: number, plain: boolean, pauseMasq = false) {
    const box = net.inside[0];
    const errorsBefore = {
      inet: await udpChecksumErrors(net, net.inet.ns),
      box: await udpChecksumErrors(net, box.ns),
    };
    const size = ["--size", String(SIZE)];
    const echo = net.lab.spawn(net.inet.ns, [
      "/usr/bin/python3",
      GSO,
      "echo",
      "--port",
      String(port),
      "--expect",
      String(DATAGRAMS),
      ...size,
    ]);
    await echo.waitFor(/listening/, 10_000);
    if (pauseMasq) process.kill(masq.proc.pid, "SIGSTOP");
    let sender: ReturnType<typeof net.lab.spawn>;
    try {
      sender = net.lab.spawn(box.ns, [
        "/usr/bin/python3",
        GSO,
        "send",
        "--dst",
        net.inet.addr,
        "--port",
        String(port),
        "--count",
        String(DATAGRAMS),
        ...size,
        ...(plain ? ["--plain"] : []),
      ]);
      if (pauseMasq) await new Promise((r) => setTimeout(r, 1000));
    } finally {
      if (pauseMasq) process.kill(masq.proc.pid, "SIGCONT");
    }
    assert.ok(await sender.waitExit(30_000), "A-box's side ends");
    assert.ok(await echo.waitExit(15_000), "the Internet host's side ends");
    const there = JSON.parse(echo.stdout.trim().split("\n").pop() ?? "{}");
    const back = JSON.parse(sender.stdout.trim() || "{}");
    const stats = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
    const detail = JSON.stringify({ there, back, stderr: sender.stderr, devices: stats.devices });
    assert.equal(there.peer, net.publicAddr, `the Internet host sees the public address: ${detail}`);
    assert.deepEqual(
      { received: there.received, bad: there.bad },
      { received: DATAGRAMS, bad: 0 },
      `at the Internet host: ${detail}`,
    );
    assert.deepEqual(
      { received: back.received, bad: back.bad },
      { received: DATAGRAMS, bad: 0 },
      `at A-box: ${detail}`,
    );
    assert.equal(
      await udpChecksumErrors(net, net.inet.ns),
      errorsBefore.inet,
      "no checksum errors at the Internet host",
    );
    assert.equal(await udpChecksumErrors(net, box.ns), errorsBefore.box, "no checksum errors at A-box");
    return { stats, detail };
  }

  it("UDP_SEGMENT datagrams from A-box and the Internet host's answers arrive whole with right checksums, read by masq as super-packets", async () => {
    const { stats, detail } = await exchange(7100, false);
    // The proof that USO was in force: masq read UDP super-packets on both TUNs.
    const devices = stats.devices ?? {};
    for (const [name, counters] of Object.entries(devices))
      assert.ok((counters.rxGsoUdp ?? 0) > 0, `${name} read no UDP super-packet: ${detail}`);
  });

  it("single datagrams queued behind each other are written as super-packets and arrive whole and in order", async () => {
    const before = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
    const coalescedBefore = before.datapath.coalesced ?? 0;
    // One datagram per send; masq merges those it reads together on the way out (udp-coalesce.ts).
    const { stats, detail } = await exchange(7101, true, true);
    const merged = (stats.datapath.coalesced ?? 0) - coalescedBefore;
    assert.ok(merged >= DATAGRAMS / 2, `${merged} datagrams written inside super-packets: ${detail}`);
    const superPackets = Object.values(stats.devices ?? {}).reduce((n, c) => n + (c.txGsoUdp ?? 0), 0);
    assert.ok(superPackets > 0, `no UDP super-packet written: ${detail}`);
  });
});
