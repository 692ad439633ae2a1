// End to end (issue 11 part 2): MSS clamping. The WAN between the gateway and the ISP has MTU
// 1492 (PPPoE), the LAN and the Internet beyond 1500, and the ISP router's fragmentation-needed
// errors are dropped (nft in the ISP namespace: ICMP type 3 code 4), as on paths that filter
// ICMP. A download from the Internet host then only works if the inside host's SYN tells the
// server a segment size that fits the WAN: with the default `mss_clamp = "pmtu"` masq lowers it
// to 1492 − 40 and a 20 MB curl download arrives byte-exact; with `mss_clamp = "off"` the server's
// full-size segments die at the ISP router unannounced and the download stalls after the
// handshake (curl --max-time ends it).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { bodySha256 } from "../../src/lab/body.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening } from "../../src/lab/wait.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const DOWNLOAD_BYTES = 20_000_000;
/** Seconds the download may take: well under one here when it works. */
const DOWNLOAD_LIMIT_SEC = 60;
/** Seconds the stalled download is given before curl gives up. */
const STALL_LIMIT_SEC = 15;

/** The ISP router drops the fragmentation-needed errors it would send (and forward). */
const BLOCK_FRAG_NEEDED = [
  "table ip pmtud_blackhole {",
  "  chain output {",
  "    type filter hook output priority 0; policy accept;",
  "    icmp type destination-unreachable icmp code frag-needed counter drop",
  "  }",
  "  chain forward {",
  "    type filter hook forward priority 0; policy accept;",
  "    icmp type destination-unreachable icmp code frag-needed counter drop",
  "  }",
  "}",
  "",
].join("\n");

describe("MSS clamping: WAN 1492, ICMP fragmentation-needed filtered upstream", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess | undefined;
  let tmp: string;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masq-mss-"));
    net = await buildMasqNetwork({ prefix: "masqmss", mode: "interface", wanMtu: 1492 });
    await net.lab.run(net.isp.ns, ["nft", "-f", "-"], { input: BLOCK_FRAG_NEEDED });
    net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
    await waitListening(net.lab, net.inet.ns, "tcp", 80);
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  const counters = async (m: MasqProcess) =>
    (JSON.parse(await m.cli(["stats", "--json"])) as StatsReply).engine.counters;

  /** curl from A-box: exit code, and the size and SHA-256 of what arrived. */
  const download = async (limitSec: number) => {
    const url = `http://${net.inet.addr}/bytes/${DOWNLOAD_BYTES}`;
    const r = await net.lab.exec(
      net.inside[0].ns,
      [
        "sh",
        "-c",
        `curl -s --max-time ${limitSec} -o ${tmp}/got.bin ${url}; echo "curl=$?"; ` +
          `stat -c %s ${tmp}/got.bin; sha256sum ${tmp}/got.bin`,
      ],
      { timeoutMs: (limitSec + 15) * 1000 },
    );
    const code = Number(/curl=(\d+)/.exec(r.stdout)?.[1] ?? -1);
    const [, size, sha] = /curl=\d+\n(\d+)\n([0-9a-f]{64})/.exec(r.stdout) ?? [];
    rmSync(join(tmp, "got.bin"), { force: true });
    return { code, size: Number(size), sha, text: r.stdout + r.stderr };
  };

  it('mss_clamp = "pmtu" (the default): a 20 MB download arrives byte-exact, the SYN clamped to 1452', async () => {
    masq = await startMasq(net);
    const got = await download(DOWNLOAD_LIMIT_SEC);
    const c = await counters(masq);
    assert.equal(got.code, 0, `curl failed: ${got.text} ${JSON.stringify(c)}`);
    assert.equal(got.size, DOWNLOAD_BYTES);
    assert.equal(got.sha, bodySha256(DOWNLOAD_BYTES), "what arrived is what was sent");
    assert.ok(c.mss_clamped >= 1, JSON.stringify(c));
    assert.match(masq.proc.stderr, /MSS clamp 1452 out, 1460 in \(pmtu: MTU 1492 outside, 1500 inside\)/);
    assert.equal(await masq.stop(), 0);
  });

  it('mss_clamp = "off": the same download stalls after the handshake (the ISP\'s errors are dropped)', async () => {
    const config = join(tmp, "masq.toml");
    writeFileSync(config, 'mss_clamp = "off"\n');
    masq = await startMasq(net, { config });
    const got = await download(STALL_LIMIT_SEC);
    const c = await counters(masq);
    // 28: curl's "operation timed out", after connecting (7 would be a failed connection).
    assert.equal(got.code, 28, `the download did not stall: ${got.text}`);
    assert.ok(!(got.size >= DOWNLOAD_BYTES), `${got.size} bytes arrived`);
    assert.equal(c.mss_clamped, 0, JSON.stringify(c));
    assert.ok(c.tcp_handshakes_completed >= 1, JSON.stringify(c));
    // The stall is the blackhole's doing: the ISP router did try to say "fragmentation needed".
    const ruleset = await net.lab.run(net.isp.ns, ["nft", "list", "table", "ip", "pmtud_blackhole"]);
    const dropped = [...ruleset.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    assert.ok(dropped >= 1, ruleset);
  });
});
