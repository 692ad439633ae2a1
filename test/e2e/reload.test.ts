// End to end: live reload of a running masq's config file (`masq reload` and SIGHUP). A firewall
// rule added to the file blocks a port the inside host then cannot reach (curl), a changed UDP
// timeout holds for the next flow, a forward replaced in the file opens the new port to the
// Internet host and closes the old one (a forward added at runtime stays), a change of the TUN's
// name is refused naming the key and changes nothing, an invalid file changes nothing, and a slow
// download through masq runs across every reload without a break.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConnsReply, ForwardsReply, StatsReply } from "../../src/control/format.ts";
import { labScript, MASQ_BIN, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";
import { waitUntil } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";

/**
 * The slow download: 24 MiB at 256 KiB/s, 96 s at least, so it spans every reload below (they
 * take about 40 s here) with room for a busy machine.
 */
const DOWNLOAD_BYTES = 24 << 20;
const DOWNLOAD_RATE = "256k";

describe("live reload of the config file", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let tmp: string;
  let config: string;
  let download: LabProcess;
  const servers: LabProcess[] = [];
  /** Each reload's moment: the download was running then. */
  const downloadRunningAtReload: boolean[] = [];

  const curl = (ns: string, url: string, maxTime = 5) =>
    net.lab.exec(ns, ["curl", "-sS", "--max-time", String(maxTime), url], {
      timeoutMs: (maxTime + 5) * 1000,
    });
  const stats = async () => JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
  /** `masq reload` as an operator runs it; the exit code and both outputs. */
  const reload = async (...args: string[]) => {
    const r = await net.lab.exec(
      net.gate.ns,
      [process.execPath, MASQ_BIN, "reload", ...args, "--socket", masq.socket],
      { timeoutMs: 60_000 },
    );
    downloadRunningAtReload.push(download.running);
    return r;
  };
  /** The config file: the base, then the sections of a test. */
  const writeConfig = (...sections: string[]) =>
    writeFileSync(config, [`state_dir = "${join(tmp, "state")}"`, ...sections, ""].join("\n"));
  /** masq's TUN, named by the file (not by --tun, which would win over it). */
  const TUN = 'tun = "masq0"';
  const forward = (outside: string, inside: string) =>
    ["[[forward]]", `outside = "${outside}"`, `inside = "${inside}"`].join("\n");
  const rejectPort81 = () =>
    [
      "[[firewall.rule]]",
      'name = "no web 81"',
      'direction = "outbound"',
      'action = "reject"',
      'protocol = "tcp"',
      "destination_ports = 81",
    ].join("\n");
  const udpTimeout = (sec: number) => `[timeouts]\nudp = ${sec}`;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqrl-e2e-"));
    net = await buildMasqNetwork({ prefix: "masqrl", mode: "interface" });
    for (const port of [80, 81]) {
      const s = net.lab.spawn(net.inet.ns, [
        ...labScript("inet-service"),
        "--http",
        String(port),
        "--udp",
        String(10_000 + port),
      ]);
      servers.push(s);
      await s.waitFor(/"proto":"udp"/, 10_000);
    }
    for (const box of net.inside.slice(0, 2)) {
      const s = net.lab.spawn(box.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
      servers.push(s);
      await s.waitFor(/"proto":"udp"/, 10_000);
    }
    config = join(tmp, "masq.toml");
    writeConfig(TUN, forward("8080/tcp", `${net.inside[0].addr}:80`));
    masq = await startMasq(net, { config, tun: null });
    // Through masq from C-box, slowly, for the whole test.
    download = net.lab.spawn(net.inside[2].ns, [
      "curl",
      "-sS",
      "--limit-rate",
      DOWNLOAD_RATE,
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      `http://${net.inet.addr}/bytes/${DOWNLOAD_BYTES}`,
    ]);
    await waitUntil(
      "the download's connection",
      async () => {
        const c = JSON.parse(await masq.cli(["conns", "--json", "--host", net.inside[2].addr])) as ConnsReply;
        return c.flows.some((f) => f.state === "established");
      },
      { timeoutMs: 10_000 },
    );
  });

  after(async () => {
    try {
      await download?.kill();
      if (masq?.proc.running) await masq.stop();
      for (const s of servers) await s.kill();
    } finally {
      await net?.destroy();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("masq reload: a firewall rule added to the file blocks the port it names for the inside host", async () => {
    assert.equal((await curl(net.inside[0].ns, `http://${net.inet.addr}:81/`)).code, 0, "81 before");
    writeConfig(TUN, forward("8080/tcp", `${net.inside[0].addr}:80`), rejectPort81());
    const check = await reload("--check");
    assert.equal(check.code, 0, check.stderr);
    assert.equal(check.stdout, "the config is valid; a reload would change: firewall.rule\n");
    assert.equal((await curl(net.inside[0].ns, `http://${net.inet.addr}:81/`)).code, 0, "--check applied");
    const r = await reload();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "reloaded: firewall.rule\n");
    const blocked = await curl(net.inside[0].ns, `http://${net.inet.addr}:81/`);
    assert.equal(blocked.code, 7, `curl: ${blocked.stderr}`); // connection refused: the reset
    assert.equal((await curl(net.inside[0].ns, `http://${net.inet.addr}:80/`)).code, 0, "80 still open");
    const s = await stats();
    assert.equal(s.firewall?.find((f) => f.name === "no web 81")?.hits, 1);
    assert.equal(s.reload?.ok, 1);
    await masq.proc.waitFor(/config reloaded: firewall\.rule/, 5000);
  });

  it("SIGHUP: a longer UDP timeout holds for the next flow", async () => {
    writeConfig(TUN, forward("8080/tcp", `${net.inside[0].addr}:80`), rejectPort81(), udpTimeout(900));
    process.kill(masq.proc.pid, "SIGHUP");
    downloadRunningAtReload.push(download.running);
    await waitUntil("the SIGHUP reload", async () => (await stats()).reload?.ok === 2, {
      timeoutMs: 10_000,
    });
    await masq.proc.waitFor(/config reloaded: timeouts\.udp/, 5000);
    const echo = await udpAsk(net.lab, net.inside[0].ns, net.inet.addr, 10_080, "ping");
    assert.equal(echo.code, 0, echo.stderr);
    const c = JSON.parse(await masq.cli(["conns", "--json", "--proto", "udp"])) as ConnsReply;
    const flow = c.flows.find((f) => f.remote.port === 10_080);
    assert.ok(flow, JSON.stringify(c.flows));
    assert.ok(flow.expiresInSec > 300 && flow.expiresInSec <= 900, `expires in ${flow.expiresInSec} s`);
  });

  it("a forward replaced in the file: the new port answers the Internet host, the old one no longer; a runtime forward stays", async () => {
    assert.equal((await curl(net.inet.ns, `http://${net.publicAddr}:8080/`)).code, 0, "8080 before");
    // Another inside endpoint than the file's forwards (one outside port per endpoint, RFC 4787).
    await masq.cli(["forward", "add", "9090/udp", `${net.inside[1].addr}:7`]);
    writeConfig(TUN, forward("8081/tcp", `${net.inside[1].addr}:80`), rejectPort81(), udpTimeout(900));
    const r = await reload();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      "reloaded: forward\n  + forward 8081/tcp 192.168.0.3:80\n  - forward 8080/tcp 192.168.0.2:80\n",
    );
    const now = await curl(net.inet.ns, `http://${net.publicAddr}:8081/`);
    assert.equal(now.code, 0, now.stderr);
    assert.match(now.stdout, /you came from/);
    assert.notEqual(
      (await curl(net.inet.ns, `http://${net.publicAddr}:8080/`, 2)).code,
      0,
      "8080 still open",
    );
    const runtime = await udpAsk(net.lab, net.inet.ns, net.publicAddr, 9090, "knock");
    assert.equal(runtime.code, 0, `the runtime forward: ${runtime.stderr}`);
    const list = JSON.parse(await masq.cli(["forward", "list", "--json"])) as ForwardsReply;
    assert.deepEqual(
      list.forwards.map((f) => [f.text, f.source]),
      [
        ["9090/udp 192.168.0.3:7", "runtime"],
        ["8081/tcp 192.168.0.3:80", "config"],
      ],
    );
    const rules = await net.lab.run(net.gate.ns, ["ip", "rule", "show"]);
    assert.ok(!/dport 8080\b/.test(rules), rules);
    assert.match(rules, /dport 8081\b/);
  });

  it("a new TUN name is refused naming the key, and nothing changes", async () => {
    writeConfig('tun = "masqrl9"', forward("8082/tcp", `${net.inside[1].addr}:80`));
    const r = await reload();
    assert.equal(r.code, 2, r.stdout);
    assert.match(r.stderr, /reload refused, nothing changed: tun: needs a restart \("masq0" → "masqrl9"/);
    assert.equal((await curl(net.inside[0].ns, `http://${net.inet.addr}:81/`)).code, 7, "the rule went");
    assert.equal((await curl(net.inet.ns, `http://${net.publicAddr}:8081/`)).code, 0, "8081 went");
    const s = await stats();
    assert.equal(s.reload?.refused, 1);
    assert.equal(s.reload?.last?.result, "refused");
    const links = await net.lab.run(net.gate.ns, ["ip", "-o", "link", "show"]);
    assert.match(links, /masq0:/);
    assert.ok(!links.includes("masqrl9"), links);
  });

  it("an invalid file is refused naming the problem, and nothing changes", async () => {
    writeConfig(TUN, forward("8082/tcp", `${net.inside[1].addr}:80`), '[timeouts]\nudp = "soon"');
    const r = await reload();
    assert.equal(r.code, 2, r.stdout);
    assert.match(r.stderr, /masq\.toml: timeouts\.udp/);
    assert.equal((await curl(net.inet.ns, `http://${net.publicAddr}:8081/`)).code, 0, "8081 went");
    assert.notEqual((await curl(net.inet.ns, `http://${net.publicAddr}:8082/`, 2)).code, 0, "8082 came");
    const s = await stats();
    assert.deepEqual([s.reload?.ok, s.reload?.refused, s.reload?.failed], [3, 1, 1]);
    const prom = await masq.cli(["stats", "--prometheus"]);
    assert.match(prom, /masq_reloads_total\{result="failed"\} 1/);
  });

  it("the slow download ran across every reload and arrived whole", { timeout: 200_000 }, async () => {
    assert.ok(downloadRunningAtReload.length >= 5);
    assert.ok(
      downloadRunningAtReload.every((r) => r),
      `the download had ended before a reload: ${downloadRunningAtReload}`,
    );
    await waitUntil("the download's end", () => !download.running, { timeoutMs: 180_000 });
    assert.equal(download.exitCode, 0, download.stderr);
    assert.equal(download.stdout, String(DOWNLOAD_BYTES));
  });
});
