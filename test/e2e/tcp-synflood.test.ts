// End to end: a SYN flood at a port forward (issue 16 item 4). The Internet side sends 10,000
// SYNs from random spoofed sources (hping3) at a forward to A-box's web server; none of them can
// complete a handshake. Before, each SYN answered by the server counted as an established
// connection and as one of A-box's flows, so the flood filled A-box's quota for two hours and
// both the forward and A-box's own connections were refused. Now the half-open connections are
// counted apart and the oldest are evicted: the Internet host's real client gets the page, and
// A-box still reaches the Internet.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const SYNS = 10_000;

describe("SYN flood at a forward, interface mode", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let tmp: string;

  const curl = (ns: string, url: string) =>
    net.lab.exec(ns, ["curl", "-sS", "--max-time", "10", url], { timeoutMs: 15_000 });

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqsyn-e2e-"));
    net = await buildMasqNetwork({ prefix: "masqsyn", mode: "interface" });
    for (const ns of [net.inside[0].ns, net.inet.ns]) {
      const s = net.lab.spawn(ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
      await s.waitFor(/"proto":"udp"/, 10_000);
    }
    const config = join(tmp, "masq.toml");
    // A smaller table than the default, so that the flood is more than one host's quota
    // (4,096) and more than the half-open cap (a quarter of max_flows: 4,096).
    writeFileSync(
      config,
      [
        `state_dir = "${join(tmp, "state")}"`,
        "[limits]",
        "max_flows = 16384",
        "max_flows_per_host = 4096",
        "[[forward]]",
        'outside = "8080/tcp"',
        `inside = "${net.inside[0].addr}:80"`,
        "",
      ].join("\n"),
    );
    masq = await startMasq(net, { config });
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  it(`${SYNS} spoofed SYNs at the forward, then the Internet host's curl gets the page and A-box's own connections work`, async (t) => {
    // From the ISP router, so the spoofed sources need no route back anywhere: 5,000 a second.
    const flood = await net.lab.exec(
      net.isp.ns,
      ["hping3", "-q", "-S", "-p", "8080", "--rand-source", "-c", String(SYNS), "-i", "u200", net.publicAddr],
      { timeoutMs: 60_000 },
    );
    assert.match(flood.stdout + flood.stderr, new RegExp(`${SYNS} packets transmitted`), flood.stderr);

    const page = await curl(net.inet.ns, `http://${net.publicAddr}:8080/`);
    assert.equal(page.code, 0, `the forward after the flood: ${page.stderr}`);
    assert.match(page.stdout, /you came from 203\.0\.113\.10:/);
    const own = await curl(net.inside[0].ns, `http://${net.inet.addr}/`);
    assert.equal(own.code, 0, `A-box's own connection after the flood: ${own.stderr}`);

    const s = (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine;
    const c = s.counters;
    t.diagnostic(
      `half-open now ${s.halfOpen}, evicted ${c.half_open_evicted}, refused at the cap ${c.drop_half_open_limit}, handshakes ${c.tcp_handshakes_completed}`,
    );
    assert.equal(c.drop_host_flow_limit, 0, JSON.stringify(c));
    assert.ok(c.half_open_evicted > 0, "the flood was more than the half-open cap");
    assert.ok(c.tcp_handshakes_completed >= 2, "the two real connections");
  });
});
