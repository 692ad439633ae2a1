// The end-to-end benchmark's latency bookkeeping (nearest-rank percentiles, ping's output, the
// report's "added by masq" column and JSON keys) and its C round-trip pair, built as the bench
// builds it and run over 127.0.0.1: every request answered and timed.
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { buildCTool, buildCTools } from "../../../bench/lib/c-tools.ts";
import { parsePing, percentiles } from "../../../bench/lib/latency.ts";
import { emptySamples, jsonFigures, table } from "../../../bench/lib/report.ts";
import { exec } from "../../../src/host/exec.ts";

describe("bench latency figures", () => {
  it("takes nearest-rank percentiles: every figure is a measured sample", () => {
    const xs = Array.from({ length: 1000 }, (_, i) => 1000 - i); // 1..1000, unsorted
    assert.deepEqual(percentiles(xs), { n: 1000, p50: 500, p99: 990, p999: 999, max: 1000 });
    assert.deepEqual(percentiles([7]), { n: 1, p50: 7, p99: 7, p999: 7, max: 7 });
    // A lone slow sample in 10 is the p99 and the max, not the median.
    assert.deepEqual(percentiles([1, 1, 1, 1, 1, 1, 1, 1, 1, 50]), {
      n: 10,
      p50: 1,
      p99: 50,
      p999: 50,
      max: 50,
    });
    assert.equal(percentiles([]), null);
    assert.equal(percentiles([Number.NaN]), null);
  });

  it("reads ping's round trips in microseconds and nothing else", () => {
    const out = [
      "PING 203.0.113.2 (203.0.113.2) 56(84) bytes of data.",
      "64 bytes from 203.0.113.2: icmp_seq=1 ttl=62 time=0.052 ms",
      "64 bytes from 203.0.113.2: icmp_seq=2 ttl=62 time=1.25 ms",
      "--- 203.0.113.2 ping statistics ---",
      "rtt min/avg/max/mdev = 0.052/0.651/1.250/0.599 ms",
    ].join("\n");
    assert.deepEqual(parsePing(out), [52, 1250]);
  });

  it("reports latencies with masq minus kernel, under the keys --json promises", () => {
    const s = emptySamples();
    s.rtt_idle_p50.kernel.push(40, 42, 41);
    s.rtt_idle_p50.masq.push(70, 75, 72);
    s.rtt_idle_p99.kernel.push(80);
    s.rtt_idle_p99.masq.push(200);
    s.rtt_load_p99.kernel.push(900);
    s.rtt_load_p99.masq.push(1500);
    const j = jsonFigures(s);
    assert.equal(j.kernel_rtt_idle_p50_us, 41);
    assert.equal(j.masq_rtt_idle_p50_us, 72);
    assert.equal(j.rtt_idle_p50_added_by_masq_us, 31);
    assert.equal(j.kernel_rtt_idle_p99_us, 80);
    assert.equal(j.masq_rtt_idle_p99_us, 200);
    assert.equal(j.masq_rtt_load_p99_us, 1500);
    assert.equal(j.rtt_load_p99_added_by_masq_us, 600);
    assert.equal(j.kernel_ping_idle_p50_us, null);
    // The existing keys stay.
    for (const k of ["kernel_tcp1_gbps", "masq_udp_pps", "new_flows_ratio", "masq_short_conns_failed"])
      assert.ok(k in j, k);
    const row = table(s, 3)
      .split("\n")
      .find((l) => l.startsWith("UDP RTT, idle, p50"));
    assert.ok(row, "the UDP RTT row");
    assert.deepEqual(row.split(/\s{3,}/).slice(1), ["41", "72", "1.76", "31"]);
  });
});

describe("bench C traffic programs", () => {
  let dir = "";
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "masq-bench-c-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("all build with gcc as the bench builds them", async () => {
    const tools = await buildCTools(dir);
    for (const path of Object.values(tools)) assert.ok(path.startsWith(dir));
  });

  it("times every UDP round trip against the echo server", async () => {
    const echo = await buildCTool(dir, "udp-echo");
    const rtt = await buildCTool(dir, "udp-rtt");
    // A free port: bind one, note it, let it go for the echo server.
    const probe = createSocket("udp4");
    await new Promise<void>((r) => probe.bind(0, "127.0.0.1", r));
    const port = probe.address().port;
    probe.close();
    const { spawn } = await import("node:child_process");
    const server = spawn(echo, [String(port)], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout.on("data", (d: Buffer) => d.toString().includes("echo ready") && resolve());
        server.on("exit", (c) => reject(new Error(`udp-echo exited ${c}`)));
      });
      const r = await exec([rtt, "127.0.0.1", String(port), "500", "0", "1000"], { timeoutMs: 20_000 });
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout) as { sent: number; lost: number; rtt_us: number[] };
      assert.equal(j.sent, 500);
      assert.equal(j.lost, 0);
      assert.equal(j.rtt_us.length, 500);
      assert.ok(j.rtt_us.every((x) => x > 0 && x < 1e6));
    } finally {
      server.kill("SIGKILL");
    }
  });
});
