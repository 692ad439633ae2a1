// End to end: IPv6 simple security (RFC 6092, issue 15 part 4). The masquerade network gets
// global IPv6 from 2001:db8::/32 (inside 2001:db8:1::/64, the Internet host 2001:db8:2::10, the
// WAN link 2001:db8:ff::/64); with `[ipv6] firewall = true` masq steers forwarded IPv6 through its
// TUNs. Inside hosts reach the Internet host over TCP, UDP and ping -6, untranslated; the Internet
// host's unsolicited TCP SYN and UDP datagram to an inside host are dropped and counted; a pinhole
// opens one port of one inside host, and only that one.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PY = "/usr/bin/python3";
const INET6 = "2001:db8:2::10";
const ABOX6 = "2001:db8:1::2";
const PINHOLE = 8081;
const CLOSED = 8082;

describe("IPv6 simple security (RFC 6092)", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess | undefined;
  let tmp: string;

  const ipv6Stats = async () =>
    (JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply).ipv6 as Record<string, number>;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqv6-e2e-"));
    net = await buildMasqNetwork({ prefix: "masqv6", mode: "interface" });
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
    lab.spawn(ns.inet, ["socat", `UDP6-RECVFROM:9000,bind=[${INET6}],fork`, "SYSTEM:'echo pong'"]);
    for (const port of [PINHOLE, CLOSED])
      lab.spawn(ns.abox, [
        "socat",
        `TCP6-LISTEN:${port},bind=[${ABOX6}],fork,reuseaddr`,
        `SYSTEM:'echo open ${port}'`,
      ]);
    await waitListening(lab, ns.inet, "tcp", 8080);
    await waitListening(lab, ns.inet, "udp", 9000);
    await waitListening(lab, ns.abox, "tcp", PINHOLE);
    await waitListening(lab, ns.abox, "tcp", CLOSED);
    writeFileSync(join(tmp, "hello.txt"), "hello over IPv6\n");

    const config = join(tmp, "masq.toml");
    writeFileSync(
      config,
      [
        `state_dir = "${join(tmp, "state")}"`,
        "[ipv6]",
        "firewall = true",
        'inside_networks = ["2001:db8:1::/64"]',
        "[[ipv6.pinhole]]",
        `address = "${ABOX6}"`,
        'protocol = "tcp"',
        `port = ${PINHOLE}`,
        "",
      ].join("\n"),
    );
    masq = await startMasq(net, { config });
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
    const pong = await lab.run(ns.bbox, ["sh", "-c", `echo ping | socat -T5 - UDP6:[${INET6}]:9000`], {
      timeoutMs: 15_000,
    });
    assert.equal(pong.trim(), "pong");
    const ping = await lab.exec(ns.abox, ["ping", "-6", "-c", "1", "-W", "5", INET6], { timeoutMs: 15_000 });
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    const s = await ipv6Stats();
    assert.ok(s.flowsCreated >= 3, JSON.stringify(s));
    assert.ok(s.passedIn >= 3 && s.passedOut >= 3, JSON.stringify(s));
  });

  it("an unsolicited TCP SYN and UDP datagram from the Internet are dropped and counted", async () => {
    const { lab, ns } = net;
    const tcp = await lab.exec(
      ns.inet,
      ["socat", "-T2", "-", `TCP6:[${ABOX6}]:${CLOSED},connect-timeout=3`],
      {
        timeoutMs: 15_000,
      },
    );
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
    const { lab, ns } = net;
    const open = await lab.run(
      ns.inet,
      ["socat", "-T5", "-", `TCP6:[${ABOX6}]:${PINHOLE},connect-timeout=10`],
      {
        timeoutMs: 20_000,
      },
    );
    assert.equal(open.trim(), `open ${PINHOLE}`);
    const closed = await lab.exec(
      ns.inet,
      ["socat", "-T2", "-", `TCP6:[${ABOX6}]:${CLOSED},connect-timeout=3`],
      {
        timeoutMs: 15_000,
      },
    );
    assert.notEqual(closed.code, 0);
    const s = await ipv6Stats();
    assert.ok(s.pinholeHits >= 1, JSON.stringify(s));
  });
});
