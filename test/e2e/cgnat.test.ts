// End to end: port blocks (`[cgnat] port_block`, RFC 6888 REQ-4) in pool mode. A-box fetches a
// page three times (three connections, three mappings): every port the server saw lies in the
// one block rsyslogd (in the ISP namespace, as in nat-log.test.ts) got a port-block record for,
// no per-mapping record is sent, and `masq whois` names A-box for each of those ports. Then in
// deterministic mode (RFC 7422) the ports are in the range the configuration gives A-box.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { deterministicPlan } from "../../src/control/cgnat-config.ts";
import type { WhoisReply } from "../../src/control/whois.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitUntil } from "../../src/lab/wait.ts";
import { Deterministic } from "../../src/nat/deterministic.ts";
import { ip } from "../helpers/packets.ts";
import { publicPortOfFetch } from "../helpers/public-port.ts";
import { type Rsyslog, startRsyslog } from "../helpers/rsyslog.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const tools = existsSync("/usr/sbin/rsyslogd");
const skip = !root ? "needs root (network namespaces)" : !tools ? "needs rsyslog" : false;

const COLLECTOR = "198.51.100.1";
const SYSLOG_PORT = 5514;

describe("cgnat: port blocks (one log record per block) and deterministic mode, with whois", { skip }, () => {
  let net: MasqNetwork;
  let tmp: string;
  let masq: MasqProcess | undefined;
  let syslog: Rsyslog;
  const lines = () => syslog.lines();

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqcg-"));
    net = await buildMasqNetwork({ prefix: "masqcg", mode: "pool" });
    const inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80"]);
    await inet.waitFor(/"proto":"http"/, 10_000);
    syslog = await startRsyslog(net.lab, net.isp.ns, tmp, COLLECTOR, SYSLOG_PORT);
    await runMasq(["port_block = 512", "max_blocks_per_host = 2"]);
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  /** (Re)starts masq with these `[cgnat]` lines, logging to rsyslogd over UDP. */
  async function runMasq(cgnat: string[]): Promise<void> {
    if (masq?.proc.running) await masq.stop();
    const config = join(tmp, "masq.toml");
    writeFileSync(
      config,
      ["[cgnat]", ...cgnat, "[nat_log]", `syslog = "udp://${COLLECTOR}:${SYSLOG_PORT}"`, ""].join("\n"),
    );
    masq = await startMasq(net, { config });
  }

  /** A-box fetches a page; the public port the server saw. */
  const fetchFromAbox = () => publicPortOfFetch(net);

  it("A-box's connections all use ports of the block logged for it, and whois names A-box", async () => {
    const ports = [await fetchFromAbox(), await fetchFromAbox(), await fetchFromAbox()];
    const abox = net.inside[0].addr;
    const line = await waitUntil(
      "a port-block record (PBADD) for A-box in rsyslog's file",
      () =>
        lines().find(
          (l) => / PBADD \[npblk /.test(l) && l.includes(`ISADDR="${abox}"`) && l.includes('PROTO="6"'),
        ),
      { timeoutMs: 20_000, describe: () => lines().slice(-5).join("\n") },
    );
    assert.ok(line.includes(`XSADDR="${net.publicAddr}"`), line);
    const first = Number(/PBSTART="(\d+)"/.exec(line)?.[1]);
    const last = Number(/PBEND="(\d+)"/.exec(line)?.[1]);
    assert.equal(last - first + 1, 512, line);
    for (const p of ports)
      assert.ok(p >= first && p <= last, `port ${p} outside A-box's block ${first}-${last}`);
    // One record per block: none per mapping.
    assert.equal(lines().filter((l) => / APMADD /.test(l)).length, 0, lines().join("\n"));
    for (const p of ports) {
      const w = JSON.parse(await masq!.cli(["whois", `${net.publicAddr}:${p}`, "--json"])) as WhoisReply;
      assert.deepEqual(
        w.holders.filter((h) => h.protocol === "tcp").map((h) => [h.inside, h.block.first, h.block.last]),
        [[abox, first, last]],
        JSON.stringify(w),
      );
    }
    const text = await masq!.cli(["whois", `${net.publicAddr}:${ports[0]}`]);
    assert.match(text, new RegExp(`tcp: ${abox.replaceAll(".", "\\.")} \\(block ${first}-${last}`));
  });

  it("deterministic mode: the ports the server sees are in A-box's computed range, and whois answers", async () => {
    await runMasq(['mode = "deterministic"', `inside = "${net.insideNet}"`]);
    const before = lines().length;
    const plan = deterministicPlan(net.insideNet, 1, 1, 65535);
    assert.ok(typeof plan !== "string", String(plan));
    const d = new Deterministic(plan);
    const abox = net.inside[0].addr;
    const i = d.indexOf(ip(abox));
    const first = d.firstPort(i);
    const last = first + d.ports - 1;
    const ports = [await fetchFromAbox(), await fetchFromAbox()];
    for (const p of ports)
      assert.ok(p >= first && p <= last, `port ${p} outside A-box's range ${first}-${last}`);
    const w = JSON.parse(await masq!.cli(["whois", `${net.publicAddr}:${ports[1]}`, "--json"])) as WhoisReply;
    assert.deepEqual(
      w.holders.map((h) => [h.protocol, h.inside, h.block.first, h.block.last, h.deterministic]),
      [["any", abox, first, last, true]],
    );
    // A past time has the same answer: the function does not change.
    const past = JSON.parse(
      await masq!.cli(["whois", `${net.publicAddr}:${first}`, "--at", "2020-01-01T00:00:00Z", "--json"]),
    ) as WhoisReply;
    assert.equal(past.holders[0]?.inside, abox);
    // No per-mapping record.
    assert.equal(
      lines()
        .slice(before)
        .filter((l) => / APMADD /.test(l)).length,
      0,
    );
  });
});
