// End to end: port forwards through the real daemon, in both address modes. An HTTP server and a
// UDP echo server on inside hosts are reached from the Internet host at the gateway's public
// address (forwards from the config and one added at runtime), from another inside host through
// the public address (hairpinning), and again after masq restarts — cleanly and after a crash.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConnsReply, ForwardsReply } from "../../src/control/format.ts";
import { labScript, MASQ_BIN, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";

async function gatewaySnapshot(net: MasqNetwork): Promise<string> {
  const ns = net.gate.ns;
  const parts = await Promise.all([
    net.lab.run(ns, ["ip", "rule", "show"]),
    net.lab.run(ns, ["ip", "-4", "route", "show", "table", "all"]),
    net.lab.run(ns, ["ip", "neigh", "show", "proxy"]),
  ]);
  return parts.join("\n---\n");
}

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`port forwarding, ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let config: string;
    let tmp: string;
    let before0 = "";
    const servers: LabProcess[] = [];

    const curl = (ns: string, url: string, maxTime = 5) =>
      net.lab.exec(ns, ["curl", "-sS", "--max-time", String(maxTime), url], {
        timeoutMs: (maxTime + 5) * 1000,
      });
    const knock = (ns: string, port: number) => udpAsk(net.lab, ns, net.publicAddr, port, "knock");

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqfwd-e2e-"));
      net = await buildMasqNetwork({ prefix: "masqfwd", mode });
      before0 = await gatewaySnapshot(net);
      for (const box of net.inside.slice(0, 2)) {
        const s = net.lab.spawn(box.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
        servers.push(s);
        await s.waitFor(/"proto":"udp"/, 10_000);
      }
      config = join(tmp, "masq.toml");
      writeFileSync(
        config,
        [
          `state_dir = "${join(tmp, "state")}"`,
          "[[forward]]",
          'outside = "8080/tcp"',
          `inside = "${net.inside[0].addr}:80"`,
          "[[forward]]",
          'outside = "5353/udp"',
          `inside = "${net.inside[1].addr}:7"`,
          "",
        ].join("\n"),
      );
      masq = await startMasq(net, { config });
    });

    after(async () => {
      try {
        if (masq?.proc.running) await masq.stop();
        for (const s of servers) await s.kill();
      } finally {
        await net?.destroy();
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

    it("a TCP forward from the config: the Internet host reaches the inside HTTP server at the public address", async () => {
      const r = await curl(net.inet.ns, `http://${net.publicAddr}:8080/`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`you came from ${net.inet.addr.replaceAll(".", "\\.")}:`));
      const conns = JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply;
      assert.ok(
        conns.flows.some(
          (f) => f.origin === "forward" && f.inside.addr === net.inside[0].addr && f.outside.port === 8080,
        ),
        JSON.stringify(conns.flows),
      );
    });

    it("a UDP forward: the inside echo server answers the Internet host", async () => {
      const r = await knock(net.inet.ns, 5353);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`echo knock from ${net.inet.addr.replaceAll(".", "\\.")}:`));
    });

    it("hairpinning: another inside host reaches the forwarded services through the public address", async () => {
      const r = await curl(net.inside[2].ns, `http://${net.publicAddr}:8080/`);
      assert.equal(r.code, 0, r.stderr);
      // The server sees the public address as the peer (RFC 5382 REQ-8), not the inside one.
      assert.match(r.stdout, new RegExp(`you came from ${net.publicAddr.replaceAll(".", "\\.")}:`));
      const u = await knock(net.inside[2].ns, 5353);
      assert.equal(u.code, 0, u.stderr);
      assert.match(u.stdout, new RegExp(`echo knock from ${net.publicAddr.replaceAll(".", "\\.")}:`));
    });

    it("masq forward add at runtime: reachable at once, listed with its origin", async () => {
      const out = await masq.cli([
        "forward",
        "add",
        "9090/tcp",
        `${net.inside[1].addr}:80`,
        "--note",
        "web2",
      ]);
      assert.match(out, /forward \d+ added: 9090\/tcp 192\.168\.0\.3:80/);
      const r = await curl(net.inet.ns, `http://${net.publicAddr}:9090/`);
      assert.equal(r.code, 0, r.stderr);
      const list = JSON.parse(await masq.cli(["forward", "list", "--json"])) as ForwardsReply;
      assert.deepEqual(
        list.forwards.map((f) => [f.text, f.source]),
        [
          ["8080/tcp 192.168.0.2:80", "config"],
          ["5353/udp 192.168.0.3:7", "config"],
          ["9090/tcp 192.168.0.3:80", "runtime"],
        ],
      );
      assert.ok(list.pins.length >= 3 && list.pins.every((p) => p.origin === "forward"));
      const text = await masq.cli(["forward", "list"]);
      assert.match(text, /9090.*192\.168\.0\.3:80.*runtime/);
      const bad = await net.lab.exec(net.gate.ns, [
        process.execPath,
        MASQ_BIN,
        "forward",
        "add",
        "9090/tcp",
        `${net.inside[2].addr}:80`,
        "--socket",
        masq.socket,
      ]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /9090\/tcp.*in use/);
    });

    it("the forwards survive a restart of masq (the runtime one from the state file), and nothing is left behind", async () => {
      assert.equal(await masq.stop(), 0, masq.proc.stderr.slice(-2000));
      assert.equal(await gatewaySnapshot(net), before0, "stopped masq left routes or rules");
      masq = await startMasq(net, { config });
      for (const port of [8080, 9090]) {
        const r = await curl(net.inet.ns, `http://${net.publicAddr}:${port}/`);
        assert.equal(r.code, 0, `port ${port}: ${r.stderr}`);
      }
      assert.equal((await knock(net.inet.ns, 5353)).code, 0);
    });

    it("after a crash (SIGKILL) the next start cleans up and installs each rule exactly once", async () => {
      await masq.proc.kill("SIGKILL", 100);
      masq = await startMasq(net, { config });
      const rules = await net.lab.run(net.gate.ns, ["ip", "rule", "show"]);
      const forwardRules = rules.split("\n").filter((l) => /dport (8080|9090)\b/.test(l));
      // Interface mode: one rule from the outside and one for hairpinning per TCP forward.
      assert.equal(forwardRules.length, mode === "interface" ? 4 : 0, rules);
      const r = await curl(net.inet.ns, `http://${net.publicAddr}:9090/`);
      assert.equal(r.code, 0, r.stderr);
    });

    it("masq forward del: the port closes, its rules go, and it stays gone after a restart", async () => {
      const out = await masq.cli(["forward", "del", "9090/tcp"]);
      assert.match(out, /removed: 9090\/tcp/);
      const r = await curl(net.inet.ns, `http://${net.publicAddr}:9090/`, 2);
      assert.notEqual(r.code, 0, "a removed forward still answers");
      const rules = await net.lab.run(net.gate.ns, ["ip", "rule", "show"]);
      assert.ok(!/dport 9090\b/.test(rules), rules);
      assert.equal(await masq.stop(), 0);
      masq = await startMasq(net, { config });
      const list = JSON.parse(await masq.cli(["forward", "list", "--json"])) as ForwardsReply;
      assert.deepEqual(
        list.forwards.map((f) => f.outside.split(":")[1]),
        ["8080", "5353"],
      );
      assert.equal(await masq.stop(), 0);
      assert.equal(await gatewaySnapshot(net), before0);
    });

    it("a corrupt forwards file is kept aside and said so; the next forward add writes a new one", async () => {
      // Where this masq keeps its runtime forwards (named after the namespace), then a corrupt
      // file there for its next start.
      masq = await startMasq(net, { config });
      const stateFile = (JSON.parse(await masq.cli(["forward", "list", "--json"])) as ForwardsReply)
        .stateFile;
      assert.ok(stateFile);
      assert.equal(await masq.stop(), 0);
      const corrupt = '{"version": 1, "forwards": [{"outside": "9090/tcp", "ins';
      writeFileSync(stateFile, corrupt);
      masq = await startMasq(net, { config });
      const log = await masq.proc.waitFor(/kept as \S+\.corrupt-/, 5000);
      const aside = /kept as (\S+?\.corrupt-[\d:.TZ-]+)/.exec(log)?.[1];
      assert.ok(aside, log);
      assert.match(
        log,
        /forwards added before the restart were not restored: forward state file \S+ is not valid JSON/,
      );
      assert.equal(readFileSync(aside, "utf8"), corrupt);
      assert.equal(existsSync(stateFile), false);
      const list = JSON.parse(await masq.cli(["forward", "list", "--json"])) as ForwardsReply;
      assert.deepEqual(
        list.forwards.map((f) => f.source),
        ["config", "config"],
      );
      await masq.cli(["forward", "add", "9091/tcp", `${net.inside[1].addr}:80`]);
      assert.deepEqual(JSON.parse(readFileSync(stateFile, "utf8")).forwards, [
        { outside: "9091/tcp", inside: `${net.inside[1].addr}:80` },
      ]);
      assert.equal(readFileSync(aside, "utf8"), corrupt, "the old file is left as it was");
      await masq.cli(["forward", "del", "9091/tcp"]);
      assert.equal(await masq.stop(), 0);
      assert.equal(await gatewaySnapshot(net), before0);
    });
  });
}
