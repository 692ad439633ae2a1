// End to end: one inside host tries to take a protocol's whole outside port range (RFC 6888
// REQ-4). A-box opens 5,000 UDP endpoints and more TCP connections than its share; masq in
// interface mode with the default configuration (4,535 ports, a quarter each) gives it its share,
// refuses the rest with an answer (ICMP host unreachable for UDP, a reset for TCP: RFC 6888
// REQ-11) and counts them, and B-box's new flows keep working.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const OPEN = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "open-endpoints.py");
/** The default share of interface mode's default range (61000-65534): a quarter of 4,535 ports. */
const SHARE = 1133;

const UDP_ASK = `
const s = require("node:dgram").createSocket("udp4");
const [host, port] = process.argv.slice(1);
s.on("message", (b) => { process.stdout.write(b.toString()); process.exit(0); });
s.send("from b-box", Number(port), host);
setTimeout(() => { process.stdout.write("timeout"); process.exit(2); }, 3000);
`;

describe("per-host port quota, interface mode, default configuration", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let inet: LabProcess;

  const stats = async () => (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;

  async function flood(kind: "udp" | "tcp", port: number, count: number) {
    const r = await net.lab.exec(
      net.inside[0].ns,
      ["python3", OPEN, kind, net.inet.addr, String(port), String(count)],
      {
        timeoutMs: 60_000,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, number>;
  }

  async function bboxWorks(): Promise<void> {
    const b = net.inside[1].ns;
    const web = await net.lab.exec(b, ["curl", "-sS", "--max-time", "5", `http://${net.inet.addr}/`], {
      timeoutMs: 8000,
    });
    assert.equal(web.code, 0, `B-box's new TCP connection: ${web.stderr}`);
    assert.match(web.stdout, /you came from 198\.51\.100\.2:/);
    const u = await net.lab.exec(b, [process.execPath, "-e", UDP_ASK, net.inet.addr, "7"], {
      timeoutMs: 8000,
    });
    assert.equal(u.code, 0, `B-box's new UDP exchange: ${u.stdout}`);
    assert.match(u.stdout, /^echo from b-box from 198\.51\.100\.2:/);
  }

  before(async () => {
    net = await buildMasqNetwork({ prefix: "masqquota", mode: "interface" });
    inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
    await inet.waitFor(/"proto":"udp"/, 10_000);
    masq = await startMasq(net);
  });

  after(async () => {
    try {
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
    }
  });

  it("A-box's 5,000 UDP endpoints get its share; the rest are told host unreachable and counted; B-box's new flows work", async () => {
    const udp = await flood("udp", 7, 5000);
    await bboxWorks();
    const c = await stats();
    const conns = JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply;
    const aUdp = conns.flows.filter((f) => f.protocol === "udp" && f.inside.addr === net.inside[0].addr);
    assert.equal(aUdp.length, SHARE, "A-box holds exactly its share of the UDP ports");
    assert.ok(udp.echo > 0 && udp.echo <= SHARE, JSON.stringify(udp));
    assert.ok(udp.hostunreach > 0, `A-box's sockets saw EHOSTUNREACH: ${JSON.stringify(udp)}`);
    assert.ok(c.drop_host_port_quota >= 5000 - SHARE - udp.other - 100, JSON.stringify(c));
    // Answers are rate-limited: far fewer than the refusals, and each one A-box saw was sent.
    assert.ok(c.exhaustion_replies >= udp.hostunreach, JSON.stringify({ c, udp }));
    assert.ok(c.exhaustion_replies * 10 < c.drop_host_port_quota, JSON.stringify(c));
  });

  it("A-box's TCP connections beyond its share are reset at once (connection refused); B-box's still connect", async () => {
    const before0 = await stats();
    const tcp = await flood("tcp", 80, SHARE + 10);
    assert.deepEqual(
      [tcp.connected, tcp.refused, tcp.pending],
      [SHARE, 10, 0],
      `A-box's ${SHARE + 10} connections: ${JSON.stringify(tcp)}`,
    );
    const after0 = await stats();
    assert.ok(after0.drop_host_port_quota - before0.drop_host_port_quota >= 10);
    await bboxWorks();
  });
});
