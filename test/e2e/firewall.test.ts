// End to end: the firewall policy and the new-flow limits through the real daemon. Real clients
// see what each action means (curl: a reset at once for reject, a timeout for drop; ping: "packet
// filtered"), the per-rule hit counters match what was sent, and one inside host flooding new
// flows hits its own limit while another keeps working.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitUntil } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";

const PER_HOST = 20;

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`firewall and limits, ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let tmp: string;
    const servers: LabProcess[] = [];

    const curl = (ns: string, url: string, maxTime = 5) =>
      net.lab.exec(ns, ["curl", "-sS", "--max-time", String(maxTime), url], {
        timeoutMs: (maxTime + 5) * 1000,
      });
    const stats = async () => JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
    const hits = (s: StatsReply, name: string) => s.firewall?.find((r) => r.name === name)?.hits ?? -1;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqfwd-fw-"));
      net = await buildMasqNetwork({ prefix: "masqfwd", mode });
      for (const port of [80, 81, 82]) {
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
      const web = net.lab.spawn(net.inside[0].ns, [
        ...labScript("inet-service"),
        "--http",
        "80",
        "--udp",
        "7",
      ]);
      servers.push(web);
      await web.waitFor(/"proto":"udp"/, 10_000);
      const config = join(tmp, "masq.toml");
      writeFileSync(
        config,
        [
          `state_dir = "${join(tmp, "state")}"`,
          "[limits]",
          `new_flows_per_sec_per_host = ${PER_HOST}`,
          "[[forward]]",
          'outside = "8080/tcp"',
          `inside = "${net.inside[0].addr}:80"`,
          "[[firewall.rule]]",
          'name = "reject web 81"',
          'direction = "outbound"',
          'action = "reject"',
          'protocol = "tcp"',
          `destination = "${net.inet.addr}"`,
          "destination_ports = 81",
          "[[firewall.rule]]",
          'name = "drop web 82"',
          'direction = "outbound"',
          'action = "drop"',
          'protocol = "tcp"',
          'destination_ports = "82"',
          "[[firewall.rule]]",
          'name = "no Internet to the inside web server"',
          'direction = "inbound"',
          'action = "reject"',
          'protocol = "tcp"',
          'source = "203.0.113.0/24"',
          `destination = "${net.inside[0].addr}/32"`,
          "destination_ports = 80",
          "[[firewall.rule]]",
          'name = "no ping from C"',
          'direction = "outbound"',
          'action = "reject"',
          'protocol = "icmp"',
          `source = "${net.inside[2].addr}"`,
          "[[firewall.rule]]",
          'name = "web"',
          'direction = "outbound"',
          'action = "accept"',
          'protocol = "tcp"',
          'destination_ports = "80"',
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

    it("accept: curl gets its page; the rule counts one hit per connection, not per packet", async () => {
      const r = await curl(net.inside[0].ns, `http://${net.inet.addr}/bytes/200000`);
      assert.equal(r.code, 0, r.stderr);
      const r2 = await curl(net.inside[1].ns, `http://${net.inet.addr}/`);
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(hits(await stats(), "web"), 2);
    });

    it("reject: curl sees the connection refused at once (a TCP reset from masq)", async () => {
      const r = await curl(net.inside[1].ns, `http://${net.inet.addr}:81/`);
      // Refused (7), not timed out (28): a reset came back.
      assert.equal(r.code, 7, `curl exit ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, /Connection refused|Failed to connect/);
      const s = await stats();
      // One hit: the reset came before the client's first SYN retransmission (1 s), so "at once"
      // is shown without timing curl, whose start-up a busy machine can slow.
      assert.equal(hits(s, "reject web 81"), 1);
      assert.equal(s.engine.counters.drop_firewall_reject, 1);
      // The server never saw the connection.
      assert.ok(!servers[1].stdout.includes(`"peer"`), servers[1].stdout);
    });

    it("drop: curl times out; every SYN it sent is a hit and a counted drop", async () => {
      const r = await curl(net.inside[1].ns, `http://${net.inet.addr}:82/`, 3);
      assert.equal(r.code, 28, `curl exit ${r.code}: ${r.stderr}`);
      const s = await stats();
      const h = hits(s, "drop web 82");
      assert.ok(h >= 2, `hits ${h}: the SYN and its retransmissions`);
      assert.equal(s.engine.counters.drop_firewall_drop, h);
      assert.ok(!servers[2].stdout.includes(`"peer"`), servers[2].stdout);
    });

    it("inbound rules: the Internet is refused by the forwarded server's rule, an inside host is not", async () => {
      const out = await curl(net.inet.ns, `http://${net.publicAddr}:8080/`);
      assert.equal(out.code, 7, `curl exit ${out.code}: ${out.stderr}`);
      const hp = await curl(net.inside[2].ns, `http://${net.publicAddr}:8080/`);
      assert.equal(hp.code, 0, hp.stderr);
      const s = await stats();
      assert.equal(hits(s, "no Internet to the inside web server"), 1);
      assert.equal(s.engine.counters.drop_firewall_reject, 2);
    });

    it("reject ICMP: ping from C-box reports the packets filtered; A-box still pings", async () => {
      const c = await net.lab.exec(
        net.inside[2].ns,
        ["ping", "-c", "2", "-i", "0.3", "-W", "1", net.inet.addr],
        {
          timeoutMs: 10_000,
        },
      );
      assert.notEqual(c.code, 0);
      assert.match(c.stdout, /Packet filtered/i);
      const a = await net.lab.exec(
        net.inside[0].ns,
        ["ping", "-c", "2", "-i", "0.3", "-W", "2", net.inet.addr],
        {
          timeoutMs: 10_000,
        },
      );
      assert.equal(a.code, 0, a.stdout);
      const s = await stats();
      assert.equal(hits(s, "no ping from C"), 2);
      const text = await masq.cli(["stats"]);
      assert.match(text, /firewall rules \(hits\):/);
      assert.match(text, /no ping from C\s+reject\s+2/);
      const prom = await masq.cli(["stats", "--prometheus"]);
      assert.match(prom, /masq_firewall_rule_hits_total\{rule="4",name="no ping from C",action="reject"\} 2/);
    });

    it("a flood of new flows from one inside host hits its limit; another inside host keeps working", async () => {
      const [flooder, other] = [net.inside[0], net.inside[1]];
      // Ten datagrams every 20 ms (500 new flows/s), each from a port of its own (a new flow each,
      // never a reused port that would meet its own earlier flow), until told to stop on stdin
      // and at least MIN are out; at most MAX. Prints how many it sent.
      const MIN = 1500;
      const MAX = 10_000;
      const script = `
        const dgram = require("node:dgram");
        let sent = 0;
        let done = 0;
        let stop = false;
        let ended = false;
        process.stdin.on("data", () => (stop = true)).on("end", () => (stop = true));
        const finish = () => {
          if (!ended || done < sent) return;
          console.log("sent " + sent);
          process.exit(0);
        };
        const tick = setInterval(() => {
          for (let k = 0; k < 10; k++) {
            const s = dgram.createSocket("udp4");
            const port = 20000 + sent++;
            s.bind(port, () =>
              s.send("x", 10080, "${net.inet.addr}", () => {
                s.close();
                done++;
                finish();
              }),
            );
          }
          if ((stop && sent >= ${MIN}) || sent >= ${MAX}) {
            clearInterval(tick);
            ended = true;
            finish();
          }
        }, 20);`;
      const before = await stats();
      const started = Date.now();
      const flood = net.lab.spawn(flooder.ns, [process.execPath, "-e", script], { stdin: true });
      let during: Awaited<ReturnType<typeof curl>> | undefined;
      try {
        // The flood is under way once masq refuses the flooder; the other host asks then.
        await waitUntil("masq refuses the flooder's new flows", async () => {
          const s = await stats();
          return s.engine.counters.drop_host_rate_limit > before.engine.counters.drop_host_rate_limit;
        });
        during = await curl(other.ns, `http://${net.inet.addr}/`);
      } finally {
        flood.child.stdin?.end();
      }
      const out = await flood.waitFor(/sent \d+/, 60_000);
      const sent = Number(/sent (\d+)/.exec(out)?.[1]);
      assert.ok(sent >= MIN, out);
      assert.equal(during?.code, 0, `the other host was refused during the flood: ${during?.stderr}`);
      // Every datagram is either a new flow or a counted refusal; wait until masq has seen all.
      const flooded = (c: ConnsReply) =>
        c.flows.filter((f) => f.inside.addr === flooder.addr && f.remote.port === 10080).length;
      let admitted = 0;
      let refused = 0;
      await waitUntil(
        "every datagram of the flood admitted or refused",
        async () => {
          const s = await stats();
          refused = s.engine.counters.drop_host_rate_limit - before.engine.counters.drop_host_rate_limit;
          admitted = flooded(JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply);
          return admitted + refused >= sent;
        },
        { describe: () => `${admitted} admitted, ${refused} refused of ${sent}` },
      );
      const seconds = (Date.now() - started) / 1000;
      assert.equal(admitted + refused, sent, `${admitted} admitted, ${refused} refused of ${sent}`);
      // A burst of one second's worth, then the rate: at most that over the time the flood could
      // have taken (measured, so a slow machine only loosens the bound), plus the host's first
      // flow, which has no bucket to take from yet.
      assert.ok(admitted >= PER_HOST, `${admitted} flows admitted`);
      const most = Math.floor(PER_HOST * (1 + seconds)) + 1;
      assert.ok(admitted <= most, `${admitted} flows admitted in ${seconds} s (at most ${most})`);
      // The flooder itself recovers once its bucket refills (one token takes 50 ms).
      await new Promise((r) => setTimeout(r, 1200));
      const again = await curl(flooder.ns, `http://${net.inet.addr}/`);
      assert.equal(again.code, 0, again.stderr);
    });
  });
}
