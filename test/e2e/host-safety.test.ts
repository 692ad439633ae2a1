// The gateway's promises under attack and after a crash, in both address modes, with real
// programs: nothing leaves untranslated when masq is killed; nothing from outside reaches an
// inside host unless a conversation or a rule admits it, whatever source a packet claims;
// nothing with a foreign source leaves (BCP 38); the host's rp_filter is kept; a crash, a
// corrupt state file or a quick restart never leaves the host stuck, and `masq cleanup`
// removes exactly what masq left.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { defaultStateFile } from "../../src/host/apply.ts";
import { PcapReader } from "../../src/io/pcap.ts";
import {
  MASQ_BIN,
  type MasqProcess,
  masqRunArgv,
  masqSocket,
  startMasq,
} from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, gatewaySnapshot, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const FORGE = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "forge.py");
const PY = "/usr/bin/python3"; // Debian's, which has scapy

/** Packets of a capture whose IPv4 source matches `source`. */
function capturedFrom(path: string, source: (addr: string) => boolean): string[] {
  const r = new PcapReader(readFileSync(path));
  const out: string[] = [];
  while (r.next()) {
    const b = r.data.subarray(r.ipOff, r.ipOff + r.ipLen);
    const src = `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
    if (source(src)) out.push(`${src} > ${b[16]}.${b[17]}.${b[18]}.${b[19]} proto ${b[9]}`);
  }
  return out;
}

const isInside = (addr: string) => addr.startsWith("192.168.0.");

async function counters(masq: MasqProcess): Promise<Record<string, number>> {
  return (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;
}

/** Waits (bounded) for `check`, polling every 50 ms. */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
}

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`the host under attack and after crashes (${mode} mode)`, { skip }, () => {
    let net: MasqNetwork;
    let tmp: string;
    let before0 = "";
    let stateFile: string;
    const started: MasqProcess[] = [];

    const start = async () => {
      const m = await startMasq(net);
      started.push(m);
      return m;
    };
    const kill9 = async (m: MasqProcess) => {
      process.kill(m.proc.pid, "SIGKILL");
      assert.ok(await m.proc.waitExit(5000), "masq is gone");
      // The kernel tears a dead process's io_uring down after the process is gone, and the TUNs
      // (and their routes) go with the ring's last reference: wait for that, as a crash leaves it.
      for (const tun of ["masq0", "masq0-out"]) {
        const deadline = Date.now() + 10_000;
        while ((await net.lab.exec(net.gate.ns, ["ip", "link", "show", "dev", tun])).code === 0) {
          assert.ok(Date.now() < deadline, `${tun} outlived its masq by 10 s`);
          await sleep(20);
        }
      }
    };
    /** tcpdump in `ns`, writing to a file; resolves once it listens. */
    const capture = async (ns: string, dev: string, name: string, filter: string[]) => {
      const file = join(tmp, `${name}.pcap`);
      const p = net.lab.spawn(ns, ["tcpdump", "-i", dev, "-n", "-U", "-Q", "in", "-w", file, ...filter]);
      await p.waitFor(/listening on/, 10_000);
      return {
        file,
        stop: async () => {
          await p.kill("SIGINT");
          return file;
        },
      };
    };
    /** A capture filter: what an inside host receives from outside its network. */
    const fromOutside = () => `ip and not src net ${net.insideNet}`;
    /** After an attack: the capture saw no packet, and masq counted at least `n` drops of `reason`. */
    const nothingButCounted = async (
      masq: MasqProcess,
      cap: { stop(): Promise<string> },
      what: string,
      reason: string,
      n: number,
    ) => {
      await sleep(500);
      assert.deepEqual(
        capturedFrom(await cap.stop(), () => true),
        [],
        what,
      );
      const c = await counters(masq);
      assert.ok((c[`drop_${reason}`] ?? 0) >= n, JSON.stringify(c));
    };
    const ping = (ns: string, addr: string, count = 2) =>
      net.lab.exec(ns, ["ping", "-n", "-c", String(count), "-i", "0.2", "-W", "2", addr], {
        timeoutMs: 15_000,
      });
    const sysctl = async (key: string) => (await net.lab.run(net.gate.ns, ["sysctl", "-n", key])).trim();
    const masqCli = (args: string[]) =>
      net.lab.exec(net.gate.ns, [process.execPath, MASQ_BIN, ...args], { timeoutMs: 30_000 });
    const poolFlags = () => (mode === "pool" ? ["--outside", net.gate.wan, "--address", net.publicAddr] : []);

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masq-safety-"));
      net = await buildMasqNetwork({ prefix: "masqsafe", mode });
      // The host leaves rp_filter off: masq must catch and count forgeries on its own.
      for (const dev of ["all", "default", net.gate.lan, net.gate.wan])
        await net.lab.sysctl(net.gate.ns, `net.ipv4.conf.${dev}.rp_filter`, 0);
      before0 = await gatewaySnapshot(net);
      stateFile = defaultStateFile("masq0", { netns: net.gate.ns });
    });

    // A test that fails half-way must not leave its masq running into the next one.
    afterEach(async () => {
      for (const m of started.splice(0)) if (m.proc.running) await m.stop();
    });

    after(async () => {
      try {
        for (const m of started) if (m.proc.running) await m.stop();
      } finally {
        await net?.destroy();
        // A masq killed with -9 leaves its control socket; the state file and any copy kept
        // aside (the namespace is gone: nothing to undo).
        if (net) rmSync(masqSocket(net), { force: true });
        if (stateFile && existsSync(dirname(stateFile)))
          for (const f of readdirSync(dirname(stateFile)))
            if (f.startsWith(basename(stateFile))) rmSync(join(dirname(stateFile), f), { force: true });
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

    it("kill -9 while an inside host sends: nothing with an inside source reaches the Internet for 5 s; hosts are told unreachable; the next start cleans up and works", async () => {
      const masq = await start();
      const box = net.inside[0];
      // A count, not a deadline: with -w, ping stops at the first error.
      const pinger = net.lab.spawn(box.ns, ["ping", "-n", "-i", "0.1", "-c", "300", net.inet.addr]);
      // From another host: the kernel rate-limits its ICMP errors per destination host (about one
      // a second), and UDP sent from the pinging host took the pinger's share of them at random.
      const udp = net.lab.spawn(net.inside[1].ns, [
        "python3",
        "-c",
        `import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(600):\n    s.sendto(b"x", ("${net.inet.addr}", 9))\n    time.sleep(0.05)`,
      ]);
      try {
        await pinger.waitFor(/bytes from/, 10_000); // flowing through masq
        const cap = await capture(net.inet.ns, net.inet.dev, "killed", ["ip"]);
        const sentBefore = pinger.stdout.length;
        await kill9(masq);
        await sleep(5000);
        const leaked = capturedFrom(await cap.stop(), isInside);
        assert.deepEqual(leaked, [], "untranslated packets reached the Internet host");
        // The inside host is told at once (the inside table's fallback), not left to time out.
        assert.match(pinger.stdout.slice(sentBefore), /From 192\.168\.0\.1 .*Destination Host Unreachable/);
        assert.ok(pinger.running, "still sending");
      } finally {
        await pinger.kill();
        await udp.kill();
      }
      const again = await start();
      assert.match(again.proc.stderr + again.proc.stdout, /cleaning up after a previous run/);
      const r = await ping(box.ns, net.inet.addr);
      assert.equal(r.code, 0, r.stdout);
      assert.equal(await again.stop(), 0);
      assert.equal(await gatewaySnapshot(net), before0);
    });

    it("a restart right after kill -9, while the dead masq is still an unreaped zombie, takes over", async () => {
      // A parent that never reaps (as a slow supervisor): bash starts masq, then becomes sleep.
      const holder = net.lab.spawn(
        net.gate.ns,
        ["bash", "-c", '"$@" & echo "masq=$!"; exec sleep 60', "bash", ...masqRunArgv(net)],
        { env: { ...process.env, MASQ_LOG_FORMAT: "json" } },
      );
      try {
        await holder.waitFor(/masq ready/, 15_000);
        const pid = Number(/masq=(\d+)/.exec(holder.stdout)?.[1]);
        assert.ok(pid > 0, holder.stdout);
        process.kill(pid, "SIGKILL");
        const state = () => {
          const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
          return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
        };
        await until(() => state() === "Z", "the killed masq is a zombie");
        const again = await start(); // refused as "another masq is running" before
        assert.equal(state(), "Z", "still a zombie while the new masq started");
        const r = await ping(net.inside[1].ns, net.inet.addr);
        assert.equal(r.code, 0, r.stdout);
        assert.equal(await again.stop(), 0);
      } finally {
        await holder.kill("SIGKILL");
      }
      assert.equal(await gatewaySnapshot(net), before0);
    });

    it("frames on the outside interface with an inside source open nothing: a scan of masq's whole port range then reaches no inside host; counted", async () => {
      const masq = await start();
      const box = net.inside[0];
      const seen = await capture(box.ns, box.dev, "forged-scan", [fromOutside()]);
      const mac = (await net.lab.run(net.gate.ns, ["cat", `/sys/class/net/${net.gate.wan}/address`])).trim();
      // The ISP router forges A-box's address, toward the Internet host: the "outbound" mapping
      // it would open is one the Internet host may then use (address-dependent filtering).
      const forge = await net.lab.exec(
        net.isp.ns,
        [
          PY,
          FORGE,
          ...["--iface", net.isp.toGateDev, "--mac", mac, "--src", box.addr, "--dst", net.inet.addr],
          ...["--udp", "5353:5353", "--tcp-syn", "2222:80", "--icmp", "--count", "3"],
        ],
        { timeoutMs: 60_000 },
      );
      assert.equal(forge.code, 0, forge.stderr);
      await sleep(300);
      const flows = JSON.parse(await masq.cli(["conns", "--json"])) as { flows: unknown[] };
      assert.deepEqual(flows.flows, [], "no mapping was opened");
      const count = String(65534 - 61000 + 1);
      for (const kind of [["--udp", "-d", "8"], ["-S"]]) {
        const scan = await net.lab.exec(
          net.inet.ns,
          ["hping3", ...kind, "-p", "++61000", "-c", count, "-i", "u200", "-q", net.publicAddr],
          { timeoutMs: 60_000 },
        );
        assert.ok(scan.code !== null, scan.stderr);
        assert.match(scan.stdout + scan.stderr, new RegExp(`${count} packets transmitted`));
      }
      await nothingButCounted(masq, seen, "an inside host was reached", "inside_source_from_outside", 9);
      assert.equal(await masq.stop(), 0);
    });

    it("packets from the Internet routed straight to an inside host (the gateway as next hop) reach nothing; counted", async () => {
      const masq = await start();
      const box = net.inside[0];
      await net.lab.addRoute(net.isp.ns, net.insideNet, "via", net.gate.wanAddr);
      try {
        const seen = await capture(box.ns, box.dev, "direct", [fromOutside()]);
        for (const kind of [
          ["--udp", "-p", "5353", "-d", "8"],
          ["-S", "-p", "22"],
          ["-S", "-p", "61234"],
          ["--icmp"],
        ])
          await net.lab.exec(net.inet.ns, ["hping3", ...kind, "-c", "3", "-i", "u20000", "-q", box.addr], {
            timeoutMs: 20_000,
          });
        await nothingButCounted(masq, seen, "an inside host was reached", "inside_address_from_outside", 12);
      } finally {
        await net.lab.ip(net.isp.ns, "route", "del", net.insideNet);
      }
      assert.equal(await masq.stop(), 0);
    });

    it("from the inside, packets with foreign sources (192.0.2.77, 203.0.113.10) never reach the Internet host; counted (BCP 38)", async () => {
      const masq = await start();
      const seen = await capture(net.inet.ns, net.inet.dev, "spoofed", [
        "src host 192.0.2.77 or src host 203.0.113.10",
      ]);
      for (const src of ["192.0.2.77", "203.0.113.10"]) {
        const r = await net.lab.exec(
          net.inside[1].ns,
          [
            PY,
            FORGE,
            "--src",
            src,
            "--dst",
            net.inet.addr,
            "--udp",
            "4000:9",
            "--tcp-syn",
            "4001:80",
            "--icmp",
          ],
          { timeoutMs: 60_000 },
        );
        assert.equal(r.code, 0, r.stderr);
      }
      await nothingButCounted(masq, seen, "a spoofed source left the gateway", "spoofed_source", 18);
      assert.equal(await masq.stop(), 0);
    });

    it("rp_filter: a host with all=1 keeps strict filtering on its own interfaces while masq runs, and gets every value back", async () => {
      await net.lab.sysctl(net.gate.ns, "net.ipv4.conf.all.rp_filter", 1);
      try {
        const withStrict = await gatewaySnapshot(net);
        const masq = await start();
        assert.equal(await sysctl("net.ipv4.conf.all.rp_filter"), "0");
        for (const dev of [net.gate.lan, net.gate.wan, "lo", "default"])
          assert.equal(await sysctl(`net.ipv4.conf.${dev}.rp_filter`), "1", dev);
        for (const dev of ["masq0", "masq0-out"])
          assert.equal(await sysctl(`net.ipv4.conf.${dev}.rp_filter`), "0");
        // Strict in force: a foreign source from the inside is dropped by the kernel itself
        // (its reverse path is not lan0), before it reaches masq.
        const rpDrops = async () => {
          const text = await net.lab.run(net.gate.ns, ["cat", "/proc/net/netstat"]);
          const [names, values] = text.split("\n").filter((l) => l.startsWith("TcpExt:"));
          return Number(values.split(" ")[names.split(" ").indexOf("IPReversePathFilter")]);
        };
        const before = await rpDrops();
        const spoof = await net.lab.exec(
          net.inside[2].ns,
          [PY, FORGE, "--src", "192.0.2.77", "--dst", net.inet.addr, "--udp", "4000:9"],
          { timeoutMs: 60_000 },
        );
        assert.equal(spoof.code, 0, spoof.stderr);
        await until(
          async () => (await rpDrops()) >= before + 3,
          "the kernel's strict rp_filter dropped them",
        );
        // And masq still works.
        const r = await ping(net.inside[2].ns, net.inet.addr);
        assert.equal(r.code, 0, r.stdout);
        assert.equal(await masq.stop(), 0);
        assert.equal(await gatewaySnapshot(net), withStrict, "every rp_filter value restored");
      } finally {
        await net.lab.sysctl(net.gate.ns, "net.ipv4.conf.all.rp_filter", 0);
      }
    });

    it("a corrupt host state file does not block the start: kept aside, masq's leftovers found and removed", async () => {
      await kill9(await start());
      assert.match(await net.lab.ip(net.gate.ns, "rule", "show"), /lookup 100/, "leftover rules");
      writeFileSync(stateFile, '{"version": 1, "pid": 4');
      const masq = await start(); // refused before: "not valid JSON; inspect and remove it by hand"
      const log = masq.proc.stdout + masq.proc.stderr;
      assert.match(log, /state file is corrupt: kept aside/);
      assert.match(log, /removed masq's leftovers found on the host/);
      const aside = readdirSync(dirname(stateFile)).filter((f) =>
        f.startsWith(`${basename(stateFile)}.corrupt-`),
      );
      assert.equal(aside.length, 1);
      assert.equal(readFileSync(join(dirname(stateFile), aside[0]), "utf8"), '{"version": 1, "pid": 4');
      rmSync(join(dirname(stateFile), aside[0]));
      const r = await ping(net.inside[0].ns, net.inet.addr);
      assert.equal(r.code, 0, r.stdout);
      assert.equal(await masq.stop(), 0);
      assert.equal(await gatewaySnapshot(net), before0);
    });

    it("masq cleanup: refused while a masq runs; after kill -9 the dry run changes nothing and cleanup removes exactly what masq left", async () => {
      const masq = await start();
      const live = await masqCli(["cleanup", ...poolFlags()]);
      assert.equal(live.code, 1, live.stdout);
      assert.match(live.stderr, new RegExp(`another masq \\(pid ${masq.proc.pid}\\) is running`));
      await kill9(masq);
      const left = await gatewaySnapshot(net);
      assert.notEqual(left, before0);
      const dry = await masqCli(["cleanup", "--dry-run", ...poolFlags()]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /would undo what .* records:/);
      assert.match(dry.stdout, /ip rule del pref 300 iif lan0 lookup 100/);
      assert.match(dry.stdout, /ip route del unreachable default metric 4242424242 table 100/);
      assert.equal(await gatewaySnapshot(net), left, "the dry run changed nothing");
      const clean = await masqCli(["cleanup", ...poolFlags()]);
      assert.equal(clean.code, 0, clean.stdout + clean.stderr);
      assert.match(clean.stdout, /removed: /);
      assert.equal(await gatewaySnapshot(net), before0);
      assert.equal(existsSync(stateFile), false);
      assert.match((await masqCli(["cleanup", ...poolFlags()])).stdout, /nothing of masq's to remove/);
    });

    it("masq cleanup with a corrupt state file: kept aside, and what is recognisably masq's is removed", async () => {
      await kill9(await start());
      writeFileSync(stateFile, "garbage");
      const dry = await masqCli(["cleanup", "--dry-run", ...poolFlags()]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /is corrupt/);
      assert.match(dry.stdout, /would remove what is masq's on the host and no record covers:/);
      assert.match(dry.stdout, /ip rule del pref 90 iif wan0 from 192\.168\.0\.0\/24 lookup 102/);
      if (mode === "pool") assert.match(dry.stdout, /ip neigh del proxy 198\.51\.100\.100 dev wan0/);
      const clean = await masqCli(["cleanup", ...poolFlags()]);
      assert.equal(clean.code, 0, clean.stdout + clean.stderr);
      assert.match(clean.stdout, /corrupt: kept aside/);
      // Sysctls cannot be told apart and stay as found; here all.rp_filter was 0 before masq,
      // so nothing else differs.
      assert.equal(await gatewaySnapshot(net), before0);
    });
  });
}
