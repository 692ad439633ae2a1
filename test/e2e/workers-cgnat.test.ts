// End to end: port blocks (`[cgnat] port_block`) with two workers, pool mode. Each worker gives
// its hosts blocks of its own slice of the range, so a reply to any port of a block is steered to
// the worker that holds it: A-box (worker 0) and C-box (worker 1) each fetch pages over several
// connections, every port the server sees lies in one block of that host's worker's slice, and
// `masq whois` (asking every worker) names the host for each of them.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { WhoisReply } from "../../src/control/whois.ts";
import { hostWorker } from "../../src/datapath/steering-model.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { DEFAULT_POOL_PORTS } from "../../src/nat/config.ts";
import { portOwner } from "../../src/nat/port-slices.ts";
import { ip } from "../helpers/packets.ts";
import { publicPortOfFetch } from "../helpers/public-port.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const WORKERS = 2;
const BLOCK = 512;

describe("port blocks with two workers (pool mode)", { skip }, () => {
  let net: MasqNetwork;
  let tmp: string;
  let masq: MasqProcess;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqwcg-"));
    net = await buildMasqNetwork({ prefix: "masqwcg", mode: "pool" });
    const inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80"]);
    await inet.waitFor(/"proto":"http"/, 10_000);
    const config = join(tmp, "masq.toml");
    writeFileSync(config, `workers = ${WORKERS}\n[cgnat]\nport_block = ${BLOCK}\nmax_blocks_per_host = 2\n`);
    masq = await startMasq(net, { config });
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  for (const box of [0, 2]) {
    it(`inside host ${box + 1}'s connections use one block of its worker's slice; whois names it`, async () => {
      const host = net.inside[box];
      const worker = hostWorker(ip(host.addr), WORKERS);
      assert.equal(worker, box === 0 ? 0 : 1, "A-box on worker 0, C-box on worker 1");
      const ports: number[] = [];
      for (let i = 0; i < 3; i++) ports.push(await publicPortOfFetch(net, box));
      for (const p of ports)
        assert.equal(
          portOwner(DEFAULT_POOL_PORTS, true, p, WORKERS),
          worker,
          `port ${p} of worker ${worker}'s slice`,
        );
      const holders = new Set<string>();
      for (const p of ports) {
        const w = JSON.parse(await masq.cli(["whois", `${net.publicAddr}:${p}`, "--json"])) as WhoisReply;
        assert.equal(w.portBlocks, true);
        const tcp = w.holders.filter((h) => h.protocol === "tcp");
        assert.equal(tcp.length, 1, JSON.stringify(w));
        assert.equal(tcp[0].inside, host.addr, JSON.stringify(w));
        assert.equal(tcp[0].block.last - tcp[0].block.first + 1, BLOCK);
        assert.ok(p >= tcp[0].block.first && p <= tcp[0].block.last, JSON.stringify(w));
        holders.add(`${tcp[0].block.first}-${tcp[0].block.last}`);
      }
      assert.equal(holders.size, 1, `one block for the three connections: ${[...holders]}`);
    });
  }
});
