// End to end: ordinary short connections must not use the port range up (issue 17 item 2). A-box
// runs ApacheBench, 30,000 HTTP/1.0 requests (no keep-alive, a connection each) 100 at a time,
// against lighttpd on the Internet host, through masq in interface mode with the default
// configuration. Each connection's mapping holds its port for the 4 minutes after its close, so
// before, A-box had its share of the ports (1,133) after as many requests and every request after
// that was refused. Now a new connection takes the port of one of A-box's own finished mappings
// (src/nat/closed-mappings.ts; lighttpd holds the old 4-tuple in TIME-WAIT and takes the new SYN
// by its newer timestamp): every request succeeds. Meanwhile B-box's new connections work. The
// rate ab reaches through masq and, for comparison, through the kernel's own NAT in the same
// namespaces is printed (not asserted).
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, enableKernelNat, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening } from "../../src/lab/wait.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const REQUESTS = 30_000;
const CONCURRENCY = 100;
/** ab gives up after this many seconds whatever it has done (-t), and on a reply after -s. */
const AB_LIMIT_SEC = 45;
const AB_REPLY_TIMEOUT_SEC = 10;

/** What ab printed: completed and failed requests, non-2xx responses, the rate. */
interface AbReport {
  complete: number;
  failed: number;
  non2xx: number;
  rate: number;
  text: string;
}

function parseAb(text: string): AbReport {
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
  return {
    complete: num(/^Complete requests:\s+(\d+)/m),
    failed: num(/^Failed requests:\s+(\d+)/m),
    non2xx: /^Non-2xx responses:\s+(\d+)/m.test(text) ? num(/^Non-2xx responses:\s+(\d+)/m) : 0,
    rate: num(/^Requests per second:\s+([\d.]+)/m),
    text,
  };
}

describe("short connections from one host, interface mode, default configuration", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let tmp: string;
  let url: string;

  /** Runs ab in A-box to completion (bounded by its own time limit). */
  async function ab(): Promise<AbReport> {
    const r = await net.lab.exec(
      net.inside[0].ns,
      [
        "ab",
        // -t before -n: -t alone implies 50,000 requests.
        "-t",
        String(AB_LIMIT_SEC),
        "-n",
        String(REQUESTS),
        "-c",
        String(CONCURRENCY),
        "-s",
        String(AB_REPLY_TIMEOUT_SEC),
        // Count a failed receive as a failed request instead of stopping.
        "-r",
        url,
      ],
      { timeoutMs: (AB_LIMIT_SEC + AB_REPLY_TIMEOUT_SEC + 15) * 1000 },
    );
    assert.equal(r.code, 0, `ab: ${r.stderr.slice(-1000)}`);
    return parseAb(r.stdout);
  }

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqshort-e2e-"));
    net = await buildMasqNetwork({ prefix: "masqshort", mode: "interface" });
    writeFileSync(join(tmp, "index.html"), "hello from lighttpd\n");
    writeFileSync(
      join(tmp, "lighttpd.conf"),
      [
        `server.document-root = "${tmp}"`,
        "server.port = 80",
        `server.bind = "${net.inet.addr}"`,
        `server.errorlog = "${join(tmp, "lighttpd.log")}"`,
        "server.max-connections = 2048",
        "server.max-fds = 4096",
        "",
      ].join("\n"),
    );
    net.lab.spawn(net.inet.ns, ["lighttpd", "-D", "-f", join(tmp, "lighttpd.conf")]);
    await waitListening(net.lab, net.inet.ns, "tcp", 80);
    url = `http://${net.inet.addr}/index.html`;
    masq = await startMasq(net);
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  it("30,000 HTTP/1.0 requests, 100 at a time, all succeed; B-box's new connections work meanwhile", async (t) => {
    const before0 = (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;
    let abDone = false;
    const run = ab().finally(() => {
      abDone = true;
    });
    // B-box opens new connections while A-box's run lasts (bounded: ab is bounded in time).
    const bbox: { ok: number; failures: string[] } = { ok: 0, failures: [] };
    for (let i = 0; i < 200 && !abDone; i++) {
      const r = await net.lab.exec(net.inside[1].ns, ["curl", "-sS", "--max-time", "5", url], {
        timeoutMs: 8000,
      });
      if (r.code === 0 && r.stdout === "hello from lighttpd\n") bbox.ok++;
      else bbox.failures.push(`${r.code} ${r.stderr.trim()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const report = await run;
    const c = (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;
    t.diagnostic(
      `through masq: ${report.rate} requests/s (${report.complete} complete, ${report.failed} failed); ` +
        `${c.tcp_ports_reused - before0.tcp_ports_reused} ports of finished mappings reused; ` +
        `B-box: ${bbox.ok} connections during the run`,
    );
    assert.equal(report.complete, REQUESTS, report.text);
    assert.equal(report.failed, 0, report.text);
    assert.equal(report.non2xx, 0, report.text);
    assert.deepEqual(bbox.failures, [], "B-box's connections during A-box's run");
    assert.ok(bbox.ok >= 1, "B-box connected while ab ran");
    assert.ok(c.tcp_ports_reused > before0.tcp_ports_reused, "more connections than A-box's share of ports");
    assert.equal(c.drop_host_port_quota, before0.drop_host_port_quota, "none refused for the share");
  });

  it("for comparison: the same run through the kernel's NAT (a figure, not asserted)", async (t) => {
    await masq.stop();
    await enableKernelNat(net);
    const report = await ab();
    t.diagnostic(
      `through the kernel's NAT: ${report.rate} requests/s (${report.complete} complete, ${report.failed} failed)`,
    );
  });
});
