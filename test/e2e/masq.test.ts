// End to end: masq as a real daemon in the gateway namespace of the classic masquerade network,
// real programs on both sides (curl, ping, traceroute, socat), in both address modes.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import {
  buildMasqNetwork,
  gatewaySnapshot,
  type LabProcess,
  type MasqMode,
  type MasqNetwork,
} from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";
import { fetchFromEveryBox } from "../helpers/fetch-all.ts";
import { tearDown } from "../helpers/teardown.ts";

/** The UDP timeout masq runs with here: short, so expiry is seen; long beside the 2 s idle. */
const UDP_TIMEOUT_SEC = 8;
/** Each mode runs with one of the two I/O paths, so both carry every test here. */
const IO: Record<MasqMode, "uring" | "syscalls"> = { interface: "uring", pool: "syscalls" };

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";

function peersSeen(inet: LabProcess, proto: string): string[] {
  const out: string[] = [];
  for (const l of inet.stdout.split("\n")) {
    if (!l.startsWith("{")) continue;
    const o = JSON.parse(l) as { proto?: string; peer?: string };
    if (o.proto === proto && o.peer) out.push(o.peer);
  }
  return out;
}

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`masq run, ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let inet: LabProcess;
    let before0 = "";
    let tmp: string;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masq-e2e-"));
      net = await buildMasqNetwork({ prefix: "masqe2e", mode });
      before0 = await gatewaySnapshot(net);
      inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
      await inet.waitFor(/"proto":"udp"/, 10_000);
      // Short UDP timeout so expiry can be exercised instead of waited for.
      const config = join(tmp, "masq.toml");
      writeFileSync(
        config,
        `datapath_io = "${IO[mode]}"\n[timeouts]\nallow_short_timeouts = true\nudp = ${UDP_TIMEOUT_SEC}\n`,
      );
      masq = await startMasq(net, { config });
    });

    after(async () => {
      await tearDown({ masq, net, tmp });
    });

    it("the packet loop runs on one CPU, and by default (rps = false) neither TUN steers its received packets to other CPUs: the kernel's work on what masq writes stays in masq's context, with no inter-processor interrupt per hand-off", async () => {
      const n = availableParallelism();
      // The main thread's affinity (its task entry has the process id).
      const status = await net.lab.run(net.gate.ns, [
        "cat",
        `/proc/${masq.proc.pid}/task/${masq.proc.pid}/status`,
      ]);
      const allowed = /^Cpus_allowed_list:\s*(.+)$/m.exec(status)?.[1];
      const stats = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      if (n >= 2) {
        assert.equal(allowed, String(n - 1), "pinned to the last CPU");
        assert.equal(stats.datapathCpu, n - 1);
      } else assert.equal(stats.datapathCpu, undefined);
      for (const tun of ["masq0", "masq0-out"]) {
        const r = await net.lab.exec(net.gate.ns, ["cat", `/sys/class/net/${tun}/queues/rx-0/rps_cpus`]);
        const mask = BigInt(`0x${r.stdout.trim().replaceAll(",", "")}`);
        assert.equal(mask, 0n, `${tun}: no RPS`);
      }
    });

    it("the packet loop's thread runs under SCHED_FIFO (datapath_priority = realtime), what it starts does not", async () => {
      const loop = await net.lab.run(net.gate.ns, ["chrt", "-p", String(masq.proc.pid)]);
      assert.match(loop, /policy: SCHED_FIFO/, loop);
      assert.match(loop, /priority: 1\b/, loop);
      // Node's other threads (V8's, libuv's) keep the ordinary scheduler.
      const tasks = await net.lab.run(net.gate.ns, ["ls", `/proc/${masq.proc.pid}/task`]);
      const others = tasks.split(/\s+/).filter((t) => t !== "" && t !== String(masq.proc.pid));
      assert.ok(others.length > 0);
      const policies = await Promise.all(others.map((t) => net.lab.run(net.gate.ns, ["chrt", "-p", t])));
      for (const p of policies) assert.match(p, /SCHED_OTHER/, p);
    });

    it("HTTP from three inside hosts at once: the server sees the public address; 4 MB bodies arrive byte-exact", async () => {
      await fetchFromEveryBox(net, 4_000_000);
      const peers = peersSeen(inet, "http");
      assert.ok(peers.length >= 3);
      for (const p of peers) assert.equal(p, net.publicAddr);
    });

    it(`the batches reach both TUNs as datapath_io = "${IO[mode]}" says`, async () => {
      const uring = IO[mode] === "uring";
      assert.match(
        masq.proc.stderr,
        uring ? /packet loop on [^;]*\(io_uring\)/ : /\(syscalls\)/,
        masq.proc.stderr,
      );
      const stats = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      for (const tun of ["masq0", "masq0-out"]) {
        const d = stats.devices?.[tun] ?? {};
        assert.ok(
          (d.rxPackets ?? 0) > 0 && (d.txPackets ?? 0) > 0,
          `${tun} carried the bodies: ${JSON.stringify(d)}`,
        );
        assert.equal(d.uring, uring ? 1 : 0, `${tun}: ${JSON.stringify(d)}`);
        assert.equal(d.uringFailures, 0, `${tun}: ${JSON.stringify(d)}`);
        if (uring) assert.ok((d.uringEnters ?? 0) > 0, `${tun}: ${JSON.stringify(d)}`);
        else assert.equal(d.uringEnters, 0, `${tun}: ${JSON.stringify(d)}`);
      }
    });

    it("ping from all three inside hosts to the same Internet host at the same time", async () => {
      const results = await Promise.all(
        net.inside.map((box) =>
          net.lab.exec(box.ns, ["ping", "-c", "5", "-i", "0.2", "-W", "2", net.inet.addr], {
            timeoutMs: 20_000,
          }),
        ),
      );
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 0, `${net.inside[i].name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, / 5 received/);
      }
    });

    for (const [label, flag] of [
      ["UDP", []],
      ["ICMP", ["-I"]],
    ] as const) {
      it(`traceroute (${label}) from an inside host shows the gateway, the ISP router and the target`, async () => {
        const r = await net.lab.exec(
          net.inside[0].ns,
          ["traceroute", ...flag, "-n", "-q", "1", "-w", "2", "-m", "6", net.inet.addr],
          { timeoutMs: 40_000 },
        );
        assert.equal(r.code, 0, r.stderr);
        const hops = r.stdout
          .split("\n")
          .slice(1)
          .map((l) => l.trim().split(/\s+/)[1]);
        assert.deepEqual(hops.slice(0, 3), ["192.168.0.1", "198.51.100.1", net.inet.addr], r.stdout);
      });
    }

    it("UDP request/response with socat; the mapping survives idleness shorter than its timeout and then expires", async () => {
      const box = net.inside[1];
      const ask = () => udpAsk(net.lab, box.ns, net.inet.addr, 7, "ping", { sourcePort: 40007 });
      const first = await ask();
      assert.equal(first.code, 0, first.stderr);
      const port1 = /from [\d.]+:(\d+)/.exec(first.stdout)?.[1];
      assert.ok(port1, first.stdout);
      assert.ok(first.stdout.includes(net.publicAddr));
      // Idle, but well below the timeout: a busy machine may start the next socat late.
      await new Promise((r) => setTimeout(r, 2000));
      const second = await ask();
      assert.equal(/from [\d.]+:(\d+)/.exec(second.stdout)?.[1], port1, "same mapping after 2 s idle");
      const ours = (flows: ConnsReply["flows"]) =>
        flows.some((c) => c.protocol === "udp" && c.inside.addr === box.addr && c.inside.port === 40007);
      const conns = async () => (JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply).flows;
      assert.ok(ours(await conns()));
      // Past the timeout the mapping goes (masq sweeps once a second); the deadline is generous.
      await waitUntil("the idle UDP mapping expires", async () => !ours(await conns()), {
        timeoutMs: (UDP_TIMEOUT_SEC + 30) * 1000,
        intervalMs: 500,
      });
    });

    it("unsolicited TCP SYN and UDP from the Internet host to the masq port range reach no inside host", async () => {
      // A port of masq's range that no mapping holds: the earlier tests' mappings got random ports
      // (RFC 6056), and one to the Internet host would rightly admit it (address-dependent
      // filtering) instead of dropping.
      const held = JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply;
      const taken = new Set([...held.flows, ...(held.pins ?? [])].map((m) => m.outside.port));
      let port = 61_234;
      while (taken.has(port)) port++;
      const listeners = net.inside.map((box) =>
        net.lab.spawn(box.ns, ["socat", "-u", `UDP-RECV:${port}`, "STDOUT"]),
      );
      const tcpListeners = net.inside.map((box) =>
        net.lab.spawn(box.ns, ["socat", "-u", `TCP-LISTEN:${port},reuseaddr`, "STDOUT"]),
      );
      // Listening for real, so that silence below means nothing came, not nobody listened yet.
      for (const box of net.inside) {
        await waitListening(net.lab, box.ns, "udp", port);
        await waitListening(net.lab, box.ns, "tcp", port);
      }
      const unsolicited = (s: StatsReply) => s.engine.counters.drop_no_mapping ?? 0;
      const stats = async () => JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      const statsBefore = await stats();
      await net.lab.exec(net.inet.ns, ["socat", "-u", "-", `UDP:${net.publicAddr}:${port}`], {
        input: "intruder\n",
        timeoutMs: 5000,
      });
      const syn = await net.lab.exec(
        net.inet.ns,
        ["curl", "-sS", "--max-time", "2", `http://${net.publicAddr}:${port}/`],
        { timeoutMs: 5000 },
      );
      assert.notEqual(syn.code, 0, "the TCP connection must not be established");
      // Both reached masq and were dropped there (had they been let in, they would not count).
      let statsAfter = statsBefore;
      await waitUntil(
        "masq counts the unsolicited datagram and SYN as drops",
        async () => {
          statsAfter = await stats();
          return unsolicited(statsAfter) >= unsolicited(statsBefore) + 2;
        },
        { describe: () => JSON.stringify(statsAfter.engine) },
      );
      for (const l of [...listeners, ...tcpListeners]) {
        assert.equal(l.stdout, "", "an inside host received unsolicited traffic");
        await l.kill();
      }
    });

    it("packets the kernel drops at the full TUN queue while masq is stalled are counted (stats and metrics)", async () => {
      const stats = async () => JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      const before = (await stats()).device;
      assert.equal(typeof before.kernelQueueDrops, "number");
      // The kernel's own count, read from sysfs while masq cannot answer.
      const tunDrops = async () =>
        Number(await net.lab.run(net.gate.ns, ["cat", "/sys/class/net/masq0/statistics/tx_dropped"]));
      const drops0 = await tunDrops();
      // Datagrams while masq is stopped: past 4096 the TUN queue overflows in the kernel. On a
      // busy machine the kernel may defer its receive work, and a sender that outruns it loses
      // datagrams before they reach the TUN; so send rounds of 6000 until the TUN has dropped
      // 1000 (at most 10 rounds).
      process.kill(masq.proc.pid, "SIGSTOP");
      try {
        for (let round = 0; round < 10 && (await tunDrops()) - drops0 < 1000; round++)
          await net.lab.run(net.inside[0].ns, [
            "python3",
            "-c",
            `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(6000): s.sendto(b"x", ("${net.inet.addr}", 9))`,
          ]);
      } finally {
        process.kill(masq.proc.pid, "SIGCONT");
      }
      const s = await stats();
      const after = s.device;
      assert.ok(after.kernelQueueDrops - before.kernelQueueDrops >= 1000, JSON.stringify(after));
      // The inside TUN overflowed; the totals are both devices' sums.
      const inside = s.devices?.masq0;
      const outside = s.devices?.["masq0-out"];
      assert.ok(inside && outside, JSON.stringify(s.devices));
      assert.equal(after.kernelQueueDrops, inside.kernelQueueDrops + outside.kernelQueueDrops);
      assert.ok(inside.kernelQueueDrops >= 1000);
      const prom = await masq.cli(["stats", "--prometheus"]);
      for (const [dev, counters] of [
        ["masq0", inside],
        ["masq0-out", outside],
      ] as const)
        assert.match(
          prom,
          new RegExp(
            `^masq_tun_total\\{device="${dev}",counter="kernelQueueDrops"\\} ${counters.kernelQueueDrops}$`,
            "m",
          ),
        );
    });

    if (mode === "interface") {
      it("the gateway's own services and traffic keep working in interface mode", async () => {
        const server = net.lab.spawn(net.gate.ns, [
          ...labScript("inet-service"),
          "--http",
          "8080",
          "--udp",
          "5353",
        ]);
        try {
          await server.waitFor(/"proto":"udp"/, 10_000);
          const web = await net.lab.exec(
            net.inet.ns,
            ["curl", "-sS", "--max-time", "5", `http://${net.publicAddr}:8080/`],
            { timeoutMs: 8000 },
          );
          assert.equal(web.code, 0, web.stderr);
          assert.match(web.stdout, /hello/);
          const pingGw = await net.lab.exec(
            net.inet.ns,
            ["ping", "-c", "2", "-i", "0.2", "-W", "2", net.publicAddr],
            { timeoutMs: 10_000 },
          );
          assert.equal(pingGw.code, 0, pingGw.stdout);
          const own = await net.lab.exec(
            net.gate.ns,
            ["ping", "-c", "2", "-i", "0.2", "-W", "2", net.inet.addr],
            { timeoutMs: 10_000 },
          );
          assert.equal(own.code, 0, own.stdout);
          const ownWeb = await net.lab.exec(
            net.gate.ns,
            ["curl", "-sS", "--max-time", "5", `http://${net.inet.addr}/`],
            { timeoutMs: 8000 },
          );
          assert.equal(ownWeb.code, 0, ownWeb.stderr);
          const lanWeb = await net.lab.exec(
            net.inside[0].ns,
            ["curl", "-sS", "--max-time", "5", "http://192.168.0.1:8080/"],
            { timeoutMs: 8000 },
          );
          assert.equal(lanWeb.code, 0, lanWeb.stderr);
        } finally {
          await server.kill();
        }
      });
    }

    it("SIGTERM: masq exits cleanly and leaves no route, rule, proxy entry or sysctl it added", async () => {
      const code = await masq.stop();
      assert.equal(code, 0, masq.proc.stderr.slice(-2000));
      assert.equal(await gatewaySnapshot(net), before0);
    });
  });
}
