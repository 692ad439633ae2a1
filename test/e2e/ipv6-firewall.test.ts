// End to end: IPv6 simple security (RFC 6092, issue 15 part 4). The masquerade network gets
// global IPv6 from 2001:db8::/32 (inside 2001:db8:1::/64, the Internet host 2001:db8:2::10, the
// WAN link 2001:db8:ff::/64); with `[ipv6] firewall = true` masq steers forwarded IPv6 through its
// TUNs. Inside hosts reach the Internet host over TCP, UDP and ping -6, untranslated; the Internet
// host's unsolicited TCP SYN and UDP datagram to an inside host are dropped and counted; a pinhole
// opens one port of one inside host, and only that one.
//
// PCP MAP for IPv6 pinholes (RFC 6887, `[ipv6] pcp = true`): Debian has no PCP client (its
// "libpcp" is Performance Co-Pilot), so the client is PCP6_ASK below: node:dgram over UDP6 in
// abox, sending the bytes of buildPcpRequest (src/portmap/pcp.ts) to the gateway's inside IPv6
// address, port 5351, and printing the answer. It opens a TCP and a UDP pinhole; the Internet
// host's SYN and datagram then reach abox's listeners, another port stays closed, and a delete
// (lifetime 0) closes them again.
//
// Last, an inside host's IPv6 TCP session (test/e2e/fixtures/line-session.py, a line echoed every
// 20 ms) runs across `masq stop --keep-state` and the next `masq run`: the filter's table is kept,
// so the server's replies are still admitted and the session goes on with no error.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { defaultStateFile } from "../../src/host/apply.ts";
import { parseIpv6 } from "../../src/ipv6fw/addr6.ts";
import { MASQ_BIN, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";
import { buildPcpRequest, OPCODE_MAP, PcpResult, parsePcpResponse } from "../../src/portmap/pcp.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PY = "/usr/bin/python3";
/**
 * A UDP server on (address, port) that answers every datagram with the line given. socat's
 * UDP6-RECVFROM with fork lost about one request in three when they came one after another.
 */
const UDP6_ECHO = [
  "import socket, sys",
  "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)",
  "s.bind((sys.argv[1], int(sys.argv[2])))",
  "while True:",
  "    _, peer = s.recvfrom(65535)",
  "    s.sendto((sys.argv[3] + '\\n').encode(), peer)",
].join("\n");
const INET6 = "2001:db8:2::10";
const ABOX6 = "2001:db8:1::2";
const PINHOLE = 8081;
const CLOSED = 8082;
const GW6 = "2001:db8:1::1";
/** Ports abox opens through PCP: a TCP and a UDP service. */
const PCP_TCP = 8083;
const PCP_UDP = 9100;
/** The Internet host's TCP echo service for the session across a restart. */
const ECHO6 = 7000;
const SESSION = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "line-session.py");
const GSO = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "udp-gso.py");

/** The PCP client: one request (hex) to [host]:port over UDP6, the answer printed as hex. */
const PCP6_ASK = `
const s = require("node:dgram").createSocket("udp6");
const [hex, host, port, ms] = process.argv.slice(1);
s.on("message", (b) => { process.stdout.write(b.toString("hex")); process.exit(0); });
s.send(Buffer.from(hex, "hex"), Number(port), host);
setTimeout(() => { process.stdout.write("timeout"); process.exit(2); }, Number(ms));
`;

// With two workers each filters the IPv6 of its own hosts (the steering's address hash); the
// restart and crash cases are one worker's (keep-state is refused with several).
for (const workers of [1, 2])
  describe(`IPv6 simple security (RFC 6092), workers = ${workers}`, { skip }, () => {
    const flags = workers > 1 ? ["--workers", String(workers)] : [];
    const oneWorker = { skip: workers > 1 ? "keep-state and the crash cleanup run with one worker" : false };
    let net: MasqNetwork;
    let masq: MasqProcess | undefined;
    let tmp: string;
    let config: string;

    /** The Internet host connects to abox's `port` over TCP and prints what it gets; a connection refused or dropped fails. */
    const tcpFromInternet = (port: number, connectSec = 3) =>
      net.lab.exec(
        net.ns.inet,
        ["socat", "-T5", "-", `TCP6:[${ABOX6}]:${port},connect-timeout=${connectSec}`],
        {
          timeoutMs: 20_000,
        },
      );

    const ipv6Stats = async () =>
      (JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply).ipv6 as Record<string, number>;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqv6-e2e-"));
      net = await buildMasqNetwork({ prefix: "masqv6pcp", mode: "interface" });
      const { lab, ns } = net;
      const addr = (n: string, dev: string, cidr: string) =>
        lab.ip(n, "addr", "add", cidr, "dev", dev, "nodad");
      await addr(ns.gate, "lan0", "2001:db8:1::1/64");
      await addr(ns.abox, "eth0", `${ABOX6}/64`);
      await addr(ns.bbox, "eth0", "2001:db8:1::3/64");
      for (const h of [ns.abox, ns.bbox])
        await lab.ip(h, "-6", "route", "add", "default", "via", "2001:db8:1::1");
      await addr(ns.gate, "wan0", "2001:db8:ff::2/64");
      await addr(ns.isp, "down0", "2001:db8:ff::1/64");
      await lab.ip(ns.gate, "-6", "route", "add", "default", "via", "2001:db8:ff::1");
      await addr(ns.isp, "up0", "2001:db8:2::1/64");
      await addr(ns.inet, "eth0", `${INET6}/64`);
      await lab.ip(ns.inet, "-6", "route", "add", "default", "via", "2001:db8:2::1");
      await lab.ip(ns.isp, "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:ff::2");
      await lab.sysctl(ns.isp, "net.ipv6.conf.all.forwarding", 1);

      // Servers: HTTP and UDP echo on the Internet host, two TCP services on abox.
      lab.spawn(ns.inet, [PY, "-m", "http.server", "8080", "--bind", INET6, "--directory", tmp]);
      lab.spawn(ns.inet, [PY, "-c", UDP6_ECHO, INET6, "9000", "pong"]);
      for (const port of [PINHOLE, CLOSED, PCP_TCP])
        lab.spawn(ns.abox, [
          "socat",
          `TCP6-LISTEN:${port},bind=[${ABOX6}],fork,reuseaddr`,
          `SYSTEM:'echo open ${port}'`,
        ]);
      await waitListening(lab, ns.inet, "tcp", 8080);
      await waitListening(lab, ns.inet, "udp", 9000);
      await waitListening(lab, ns.abox, "tcp", PINHOLE);
      await waitListening(lab, ns.abox, "tcp", CLOSED);
      lab.spawn(ns.abox, [PY, "-c", UDP6_ECHO, ABOX6, String(PCP_UDP), `got ${PCP_UDP}`]);
      await waitListening(lab, ns.abox, "udp", PCP_UDP);
      writeFileSync(join(tmp, "hello.txt"), "hello over IPv6\n");

      config = join(tmp, "masq.toml");
      writeFileSync(
        config,
        [
          `state_dir = "${join(tmp, "state")}"`,
          "[ipv6]",
          "firewall = true",
          "pcp = true",
          'inside_networks = ["2001:db8:1::/64"]',
          "[[ipv6.pinhole]]",
          `address = "${ABOX6}"`,
          'protocol = "tcp"',
          `port = ${PINHOLE}`,
          "",
        ].join("\n"),
      );
      masq = await startMasq(net, { config, flags });
    });

    after(async () => {
      await tearDown({ masq, net, tmp });
    });

    it("inside hosts reach the Internet host over TCP (curl), UDP and ping -6, untranslated", async () => {
      const { lab, ns } = net;
      const body = await lab.run(
        ns.abox,
        ["curl", "-sS", "-6", "--max-time", "15", `http://[${INET6}]:8080/hello.txt`],
        {
          timeoutMs: 20_000,
        },
      );
      assert.equal(body, "hello over IPv6\n");
      const pong = await lab.exec(ns.bbox, ["sh", "-c", `echo ping | socat -T5 - UDP6:[${INET6}]:9000`], {
        timeoutMs: 15_000,
      });
      assert.equal(
        pong.stdout.trim(),
        "pong",
        `${pong.code} ${pong.stderr} ${JSON.stringify(await ipv6Stats())}`,
      );
      const ping = await lab.exec(ns.abox, ["ping", "-6", "-c", "1", "-W", "5", INET6], {
        timeoutMs: 15_000,
      });
      assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      const s = await ipv6Stats();
      assert.ok(s.flowsCreated >= 3, JSON.stringify(s));
      assert.ok(s.passedIn >= 3 && s.passedOut >= 3, JSON.stringify(s));
    });

    it("a burst of one UDP flow's datagrams is written as super-packets and arrives whole, checksums checked", async () => {
      const { lab, ns } = net;
      const count = 96;
      const size = ["--size", "1200", "--ipv6"];
      // Checksums finished in software as the datagrams leave the gateway, so the Internet host's
      // stack checks each one (Udp6InCsumErrors) rather than trusting a partial one.
      await lab.run(ns.gate, ["ethtool", "-K", "wan0", "tx", "off"]);
      const csumErrors = async () => {
        const line = (await lab.run(ns.inet, ["cat", "/proc/net/snmp6"]))
          .split("\n")
          .find((l) => l.startsWith("Udp6InCsumErrors"));
        return Number(line?.split(/\s+/)[1] ?? Number.NaN);
      };
      const errorsBefore = await csumErrors();
      const before = (JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply).datapath.coalesced ?? 0;
      const echo = lab.spawn(ns.inet, [
        PY,
        GSO,
        "echo",
        "--port",
        "9200",
        "--expect",
        String(count),
        ...size,
      ]);
      await echo.waitFor(/listening/, 10_000);
      // masq stopped while abox sends, so the datagrams wait in the TUN's queue and masq reads them
      // as one batch, as under load; one datagram per send (--plain).
      const pid = masq!.proc.pid;
      process.kill(pid, "SIGSTOP");
      let sender: ReturnType<typeof lab.spawn>;
      try {
        sender = lab.spawn(ns.abox, [
          PY,
          GSO,
          "send",
          "--dst",
          INET6,
          "--port",
          "9200",
          "--count",
          String(count),
          "--plain",
          ...size,
        ]);
        await new Promise((r) => setTimeout(r, 1000));
      } finally {
        process.kill(pid, "SIGCONT");
      }
      assert.ok(await sender.waitExit(30_000), "abox's side ends");
      assert.ok(await echo.waitExit(15_000), "the Internet host's side ends");
      const there = JSON.parse(echo.stdout.trim().split("\n").pop() ?? "{}");
      const back = JSON.parse(sender.stdout.trim() || "{}");
      const stats = JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply;
      const detail = JSON.stringify({ there, back, stderr: sender.stderr, datapath: stats.datapath });
      assert.equal(there.peer, ABOX6, `untranslated: ${detail}`);
      assert.deepEqual([there.received, there.bad], [count, 0], `at the Internet host: ${detail}`);
      assert.deepEqual([back.received, back.bad], [count, 0], `the answers at abox: ${detail}`);
      assert.equal(await csumErrors(), errorsBefore, "no checksum errors at the Internet host");
      const merged = (stats.datapath.coalesced ?? 0) - before;
      assert.ok(merged >= count / 2, `${merged} datagrams written inside super-packets: ${detail}`);
    });

    it("an unsolicited TCP SYN and UDP datagram from the Internet are dropped and counted", async () => {
      const { lab, ns } = net;
      const tcp = await tcpFromInternet(CLOSED);
      assert.notEqual(tcp.code, 0, "the connection does not open");
      assert.doesNotMatch(tcp.stdout, /open/);
      await lab.run(ns.inet, ["sh", "-c", `echo x | socat - UDP6-SENDTO:[${ABOX6}]:9001`]);
      const s = await waitUntil(
        "the UDP drop is counted",
        async () => {
          const st = await ipv6Stats();
          return st.drop_unsolicited_udp >= 1 && st.drop_unsolicited_tcp >= 1 ? st : undefined;
        },
        { timeoutMs: 15_000, describe: async () => JSON.stringify(await ipv6Stats()) },
      );
      assert.ok(s.dropped >= 2, JSON.stringify(s));
    });

    it("the pinhole opens its port of abox, and only that one", async () => {
      const open = await tcpFromInternet(PINHOLE, 10);
      assert.equal(open.stdout.trim(), `open ${PINHOLE}`, open.stderr);
      const closed = await tcpFromInternet(CLOSED);
      assert.notEqual(closed.code, 0);
      const s = await ipv6Stats();
      assert.ok(s.pinholeHits >= 1, JSON.stringify(s));
    });

    it("PCP MAP opens a TCP and a UDP pinhole to abox; another port stays closed; delete closes them", async () => {
      const { lab, ns } = net;
      const me = parseIpv6(ABOX6) as Uint8Array;
      const nonce = Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i);
      const pcp = async (protocol: number, port: number, lifetime: number) => {
        const req = buildPcpRequest({
          opcode: OPCODE_MAP,
          lifetime,
          clientAddr: me,
          nonce,
          protocol,
          internalPort: port,
        });
        const r = await lab.exec(
          ns.abox,
          [process.execPath, "-e", PCP6_ASK, Buffer.from(req).toString("hex"), GW6, "5351", "5000"],
          { timeoutMs: 15_000 },
        );
        assert.equal(r.code, 0, `no PCP answer from [${GW6}]:5351 (${r.stdout} ${r.stderr})`);
        const res = parsePcpResponse(Buffer.from(r.stdout, "hex"));
        assert.ok(res, "a PCP response");
        return res;
      };
      const udpFromInternet = () =>
        lab.exec(ns.inet, ["sh", "-c", `echo hi | socat -T3 - UDP6:[${ABOX6}]:${PCP_UDP}`], {
          timeoutMs: 15_000,
        });

      const before = await tcpFromInternet(PCP_TCP);
      assert.notEqual(before.code, 0, "closed before PCP");
      for (const [protocol, port] of [
        [6, PCP_TCP],
        [17, PCP_UDP],
      ]) {
        const r = await pcp(protocol, port, 600);
        assert.equal(r.result, PcpResult.SUCCESS, JSON.stringify(r));
        // RFC 6887 §11.3, a firewall: the external endpoint is abox's own.
        assert.equal(r.externalPort, port);
        assert.deepEqual([...(r.externalAddr6 ?? [])], [...me]);
        assert.ok(r.lifetime >= 120 && r.lifetime <= 600, String(r.lifetime));
      }
      const open = await tcpFromInternet(PCP_TCP, 10);
      assert.equal(open.stdout.trim(), `open ${PCP_TCP}`, open.stderr);
      const udp = await udpFromInternet();
      assert.equal(
        udp.stdout.trim(),
        `got ${PCP_UDP}`,
        `${udp.stderr} ${JSON.stringify(await ipv6Stats())} ${await masq!.cli(["stats"])}`,
      );
      const closed = await tcpFromInternet(CLOSED);
      assert.notEqual(closed.code, 0, "a port PCP did not open stays closed");

      // Listed with the pinned mappings, and counted.
      const pins = (JSON.parse(await masq!.cli(["conns", "--json"])) as ConnsReply).pins ?? [];
      const mine = pins.filter((p) => p.origin === "ipv6-pcp" && p.inside.addr === ABOX6);
      assert.deepEqual(mine.map((p) => `${p.protocol}/${p.inside.port}`).sort(), [
        `tcp/${PCP_TCP}`,
        `udp/${PCP_UDP}`,
      ]);
      assert.ok(
        pins.some((p) => p.origin === "ipv6-config" && p.inside.port === PINHOLE),
        JSON.stringify(pins),
      );
      assert.match(await masq!.cli(["conns"]), new RegExp(`\\[${ABOX6}\\]:${PCP_TCP}.*ipv6-pcp`));
      const s = await ipv6Stats();
      assert.equal(s.pinholes_created, 2, JSON.stringify(s));
      assert.equal(s.pinholes_active, 2, JSON.stringify(s));

      // Lifetime 0 deletes (RFC 6887 §15): the Internet host's new connection is dropped again.
      for (const [protocol, port] of [
        [6, PCP_TCP],
        [17, PCP_UDP],
      ])
        assert.equal((await pcp(protocol, port, 0)).result, PcpResult.SUCCESS);
      const again = await tcpFromInternet(PCP_TCP);
      assert.notEqual(again.code, 0, "closed again after the delete");
      assert.doesNotMatch(again.stdout, /open/);
      const s2 = await ipv6Stats();
      assert.equal(s2.pinholes_active, 0, JSON.stringify(s2));
      assert.equal(s2.pinholes_deleted, 2, JSON.stringify(s2));
    });

    it(
      "an inside host's IPv6 TCP session survives masq stop --keep-state and the next masq run",
      oneWorker,
      async () => {
        const { lab, ns } = net;
        lab.spawn(ns.inet, ["socat", `TCP6-LISTEN:${ECHO6},bind=[${INET6}],reuseaddr,fork`, "PIPE"]);
        await waitListening(lab, ns.inet, "tcp", ECHO6);
        const stopFile = join(tmp, "stop-session6");
        const session = lab.spawn(ns.abox, [PY, SESSION, INET6, String(ECHO6), stopFile, "150"]);
        const echoes = () => Number([...session.stdout.matchAll(/^echo (\d+)$/gm)].at(-1)?.[1] ?? 0);
        await waitUntil("the session runs", async () => (echoes() >= 20 ? true : undefined), {
          timeoutMs: 20_000,
          describe: async () => session.stdout + session.stderr,
        });
        const first = masq as MasqProcess;
        const stop = await lab.exec(
          ns.gate,
          [process.execPath, MASQ_BIN, "stop", "--keep-state", "--socket", first.socket],
          {
            timeoutMs: 60_000,
          },
        );
        assert.equal(stop.code, 0, stop.stderr);
        masq = await startMasq(net, { config });
        assert.match(masq.proc.stdout + masq.proc.stderr, /state restored from the snapshot/);
        // The filter's flow came back with the table: the server's replies are still admitted.
        const sofar = echoes();
        await waitUntil(
          "the session carries on after the restart",
          async () => (echoes() >= sofar + 20 ? true : undefined),
          {
            timeoutMs: 60_000,
            describe: async () => session.stdout + session.stderr,
          },
        );
        writeFileSync(stopFile, "");
        await waitUntil("the session ends", async () => (/"error"/.test(session.stdout) ? true : undefined), {
          timeoutMs: 40_000,
          describe: async () => session.stdout + session.stderr,
        });
        const result = JSON.parse(session.stdout.trim().split("\n").at(-1) ?? "{}") as {
          error: string | null;
        };
        assert.equal(result.error, null, session.stdout);
      },
    );

    it(
      "after kill -9 with the host record lost, masq cleanup finds and removes the ip -6 rules and routes",
      oneWorker,
      async () => {
        const { lab, ns } = net;
        const m = masq as MasqProcess;
        process.kill(m.proc.pid, "SIGKILL");
        assert.ok(await m.proc.waitExit(5000), "masq is gone");
        masq = undefined;
        const v6 = async () =>
          (await lab.ip(ns.gate, "-6", "rule", "show")) +
          (await lab.ip(ns.gate, "-6", "route", "show", "table", "all"));
        assert.match(await v6(), /lookup 107/, "the IPv6 rules are left");
        writeFileSync(defaultStateFile("masq0", { dir: join(tmp, "state"), netns: ns.gate }), "garbage");
        const clean = await lab.exec(ns.gate, [process.execPath, MASQ_BIN, "cleanup", "--config", config]);
        assert.equal(clean.code, 0, clean.stdout + clean.stderr);
        assert.match(clean.stdout, /IPv6 rule: pref 311/);
        const left = await v6();
        assert.doesNotMatch(left, /lookup 10[67]|table 10[67]/, left);
      },
    );
  });
