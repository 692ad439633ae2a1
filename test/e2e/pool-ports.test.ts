// End to end: pool mode owns its whole address, so its default port range is every port, not
// interface mode's 4,535 (61000-65534). Three inside hosts open 2,000 UDP endpoints each, in
// bursts one after the other, 6,000 mappings at once in all: every one gets its echo. And an inside source port below 1024 is
// mapped to one below 1024 (RFC 4787 REQ-3 a, RFC 5382 REQ-3): kept when free, another low
// one for the second host that asks for the same.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const OPEN = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "open-endpoints.py");
/** Interface mode's default range holds 4,535 ports: more than that from one pool address. */
const PER_HOST = 2000;
/**
 * A UDP echo on port 9 that keeps up with the burst: the lab's inet-service logs every datagram
 * and fell behind (its socket dropped a few hundred of 6,000, past masq); this one only echoes,
 * from a large receive buffer, and ends after a minute at most.
 */
const FAST_ECHO = [
  "import socket, time",
  "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
  "s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE",
  "s.bind(('0.0.0.0', 9))",
  "s.settimeout(1)",
  "print('ready', flush=True)",
  "end = time.monotonic() + 60",
  "while time.monotonic() < end:",
  "    try:",
  "        b, a = s.recvfrom(2048)",
  "    except socket.timeout:",
  "        continue",
  "    s.sendto(b, a)",
].join("\n");

describe("pool mode's port range: the whole address", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let inet: LabProcess;
  let echo: LabProcess;

  const stats = async () => (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;

  before(async () => {
    net = await buildMasqNetwork({ prefix: "masqpoolp", mode: "pool" });
    inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
    await inet.waitFor(/"proto":"udp"/, 10_000);
    echo = net.lab.spawn(net.inet.ns, ["/usr/bin/python3", "-c", FAST_ECHO]);
    await echo.waitFor(/ready/, 10_000);
    masq = await startMasq(net);
  });

  after(async () => {
    try {
      if (inet?.running) await inet.kill("SIGTERM", 5000);
      if (echo?.running) await echo.kill("SIGTERM", 5000);
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
    }
  });

  it("6,000 new UDP endpoints from three inside hosts (2,000 each, one burst after the other) all get a mapping and their echo", async () => {
    const results: Array<Record<string, number>> = [];
    for (const h of net.inside) {
      const r = await net.lab.exec(h.ns, ["python3", OPEN, "udp", net.inet.addr, "9", String(PER_HOST)], {
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, r.stderr);
      results.push(JSON.parse(r.stdout) as Record<string, number>);
    }
    for (const [i, r] of results.entries())
      assert.deepEqual(
        [r.echo, r.hostunreach, r.other, r.silent],
        [PER_HOST, 0, 0, 0],
        `${net.inside[i].name}: ${JSON.stringify(r)}`,
      );
    const conns = JSON.parse(await masq.cli(["conns", "--json", "--proto", "udp"])) as ConnsReply;
    const udp = conns.flows.filter((f) => f.remote.port === 9);
    assert.equal(udp.length, 3 * PER_HOST, "one flow per endpoint");
    const outside = new Set(udp.map((f) => f.outside.port));
    assert.equal(outside.size, 3 * PER_HOST, "each endpoint has an outside port of its own");
    assert.ok(
      [...outside].some((p) => p < 61000),
      "ports from beyond interface mode's range (the inside hosts' own are kept)",
    );
    const c = await stats();
    for (const k of ["drop_ports_exhausted", "drop_host_port_quota", "drop_mapping_table_full"])
      assert.equal(c[k] ?? 0, 0, `${k}: ${JSON.stringify(c)}`);
  });

  it("an inside source port below 1024 is mapped below 1024: kept for the first host, another low one for the next", async () => {
    const seen: number[] = [];
    for (const h of net.inside.slice(0, 2)) {
      const r = await udpAsk(net.lab, h.ns, net.inet.addr, 7, `from ${h.name}`, { sourcePort: 500 });
      assert.equal(r.code, 0, r.stderr);
      const m = /from 198\.51\.100\.100:(\d+)/.exec(r.stdout);
      assert.ok(m, r.stdout);
      seen.push(Number(m[1]));
    }
    assert.equal(seen[0], 500, "A-box keeps its port 500");
    assert.ok(
      seen[1] >= 1 && seen[1] <= 1023 && seen[1] !== 500,
      `B-box's 500 became ${seen[1]}, below 1024`,
    );
    // TCP alike: curl from a privileged local port.
    const web = await net.lab.exec(
      net.inside[2].ns,
      ["curl", "-sS", "--max-time", "5", "--local-port", "600", `http://${net.inet.addr}/`],
      { timeoutMs: 10_000 },
    );
    assert.equal(web.code, 0, web.stderr);
    assert.match(web.stdout, /you came from 198\.51\.100\.100:600\n/);
  });
});
