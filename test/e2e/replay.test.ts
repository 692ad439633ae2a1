// Offline replay agrees with the live gateway: capture what masq reads from and writes to its two
// TUNs while real programs run through it (one capture on "any" filtered to the two devices, in
// time order), replay the input with `masq replay` (no arrival side there: the source address
// decides), and the translated packets are the ones masq wrote live, byte for byte.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { PcapReader } from "../../src/io/pcap.ts";
import { labScript, MASQ_BIN, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitUntil } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;

function packets(path: string): string[] {
  const r = new PcapReader(readFileSync(path));
  const out: string[] = [];
  while (r.next()) out.push(Buffer.from(r.data.subarray(r.ipOff, r.ipOff + r.ipLen)).toString("hex"));
  return out;
}

/** Whole records in a capture tcpdump is still writing (0 before it has written its header). */
function recordsSoFar(path: string): number {
  let r: PcapReader;
  try {
    r = new PcapReader(readFileSync(path));
  } catch {
    return 0;
  }
  let n = 0;
  while (r.next()) n++;
  return n;
}

for (const offload of [false, true]) {
  describe(`masq replay of a live capture (${offload ? "offloads on" : "no offloads"})`, {
    skip: root ? false : "needs root (network namespaces)",
  }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess | undefined;
    let tmp: string;
    const captures: LabProcess[] = [];

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masq-replay-"));
      net = await buildMasqNetwork({ prefix: "masqreplay", mode: "pool" });
    });

    after(async () => {
      try {
        for (const c of captures) if (c.running) await c.kill();
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
        rmSync(tmp, { recursive: true, force: true });
      }
    });

    it("translates the captured input exactly as masq did live", async () => {
      const inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
      await inet.waitFor(/"proto":"udp"/, 10_000);
      masq = await startMasq(net, { flags: offload ? [] : ["--no-offload"] });
      const input = join(tmp, "in.pcap");
      const live = join(tmp, "live.pcap");
      const gw = net.gate.ns;
      // Both TUNs: the inside one carries what the inside hosts send, the outside one the replies.
      const tuns = ["masq0", "masq0-out"];
      const index = async (tun: string) =>
        (await net.lab.run(gw, ["cat", `/sys/class/net/${tun}/ifindex`])).trim();
      const filter = (await Promise.all(tuns.map(index))).map((i) => `ifindex ${i}`).join(" or ");
      // -Q out: what the kernel hands masq; -Q in: what masq writes back.
      for (const [dir, file] of [
        ["out", input],
        ["in", live],
      ])
        captures.push(
          net.lab.spawn(gw, [
            "tcpdump",
            "-i",
            "any",
            "-y",
            "LINUX_SLL2",
            "-Q",
            dir,
            "-n",
            "-U",
            "-w",
            file,
            filter,
          ]),
        );
      // tcpdump says so once it captures.
      for (const c of captures) await c.waitFor(/listening on any/, 15_000);
      // The kernel counts what masq reads from its TUNs as the devices' tx and what it writes as
      // their rx; the captures are complete when they hold as many packets as the kernel counted.
      const stat = async (name: string) => {
        let sum = 0;
        for (const tun of tuns)
          sum += Number(await net.lab.run(gw, ["cat", `/sys/class/net/${tun}/statistics/${name}`]));
        return sum;
      };
      const [tx0, rx0] = [await stat("tx_packets"), await stat("rx_packets")];
      for (const box of net.inside) {
        await net.lab.exec(box.ns, ["ping", "-c", "2", "-i", "0.2", net.inet.addr], { timeoutMs: 10_000 });
        await net.lab.exec(
          box.ns,
          ["curl", "-sS", "-o", "/dev/null", `http://${net.inet.addr}/bytes/20000`],
          {
            timeoutMs: 10_000,
          },
        );
        await net.lab.exec(box.ns, ["socat", "-T", "2", "-", `UDP:${net.inet.addr}:7`], {
          input: "hello\n",
          timeoutMs: 5000,
        });
      }
      // Wait until the last packets (FIN exchanges that follow a client's exit) are through masq
      // and both captures hold everything the kernel counted, unchanged over two looks: tcpdump
      // gets packets from the kernel in blocks handed over up to a second late, and stopping it
      // loses a block not handed over yet.
      let last = "";
      let seen = "";
      await waitUntil(
        "the captures hold every packet masq read and wrote",
        async () => {
          const now = [
            (await stat("tx_packets")) - tx0,
            recordsSoFar(input),
            (await stat("rx_packets")) - rx0,
            recordsSoFar(live),
          ];
          seen = `read ${now[0]}, captured ${now[1]}; written ${now[2]}, captured ${now[3]}`;
          const settled = now[0] === now[1] && now[2] === now[3] && seen === last;
          last = seen;
          return settled;
        },
        { intervalMs: 300, describe: () => seen },
      );
      // Ports are random per run (RFC 6056); the replay needs this run's seed to pick the same.
      const seed = (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).portSeed;
      assert.equal(typeof seed, "number");
      for (const c of captures) await c.kill("SIGINT");
      await masq.stop();
      await inet.kill();

      const out = join(tmp, "out.pcap");
      const r = await net.lab.exec(
        net.inet.ns,
        [
          process.execPath,
          MASQ_BIN,
          "replay",
          input,
          out,
          "--inside",
          "192.168.0.0/24",
          "--address",
          net.publicAddr,
          "--port-seed",
          String(seed),
        ],
        { timeoutMs: 30_000 },
      );
      assert.equal(r.code, 0, r.stderr);
      const want = packets(live);
      const got = packets(out);
      assert.ok(want.length >= 30, `captured ${want.length} packets`);
      // Both sides went through the replay: replies translated back to the inside hosts too.
      assert.ok(
        got.some((hex) => hex.slice(32, 40) === "c0a80002"),
        "a packet to 192.168.0.2 (from the outside TUN)",
      );
      // Replies the engine builds are written before the batch's forwarded packets, so compare
      // the packets, not their interleaving.
      assert.deepEqual([...got].sort(), [...want].sort());
    });
  });
}
