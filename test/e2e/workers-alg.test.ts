// End to end: what crosses the workers' steering in `masq run --workers 2` (interface mode).
// abox hashes to worker 0 and cbox to worker 1 (steering-model.ts hostWorker). An FTP ALG's data
// connection must find the expectation its control connection's worker made: passive ones leave
// from the same host (its worker), active ones come in to a port of that worker's slice. A large
// UDP answer arrives as fragments, which the steering spreads by (source, destination, id), not
// by port: each datagram must still reach the worker that holds its flow.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { hostWorker } from "../../src/datapath/steering-model.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";
import { ip } from "../helpers/packets.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PY = "/usr/bin/python3";
const BIG_UDP = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "big-udp.py");
const FIRST_CONTACT = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "udp-first-contact.py");
const SIZE = 2 * 1024 * 1024 + 777;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("masq run --workers 2: ALG data connections and fragments across the workers", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let tmp: string;
  let want: string;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masq-wkalg-"));
    chmodSync(tmp, 0o755);
    const srv = join(tmp, "srv");
    mkdirSync(srv);
    const body = randomBytes(SIZE);
    want = sha(body);
    writeFileSync(join(srv, "big.bin"), body);
    net = await buildMasqNetwork({ prefix: "masqwkalg", mode: "interface" });
    const ftpd = net.lab.spawn(net.inet.ns, [
      PY,
      "-m",
      "pyftpdlib",
      "-i",
      net.inet.addr,
      "-p",
      "21",
      "-d",
      srv,
    ]);
    await ftpd.waitFor(/starting FTP server/i, 10_000);
    const big = net.lab.spawn(net.inet.ns, [PY, BIG_UDP, "serve", "9100", "3000"]);
    await big.waitFor("listening", 10_000);
    await waitListening(net.lab, net.inet.ns, "udp", 9100);
    const config = join(tmp, "masq.toml");
    writeFileSync(config, "workers = 2\n");
    masq = await startMasq(net, { config });
    const workers = new Set([net.inside[0], net.inside[2]].map((b) => hostWorker(ip(b.addr), 2)));
    assert.equal(workers.size, 2, "abox and cbox are on different workers");
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  for (const [label, flags] of [
    ["active PORT", ["--ftp-port", "-", "--disable-eprt"]],
    ["passive PASV", ["--disable-epsv"]],
  ] as const)
    it(`FTP ${label} from abox (worker 0) and cbox (worker 1): downloads byte-exact`, async () => {
      for (const box of [net.inside[0], net.inside[2]]) {
        const got = join(tmp, `got-${box.name}-${label.replace(/ /g, "-")}.bin`);
        const r = await net.lab.exec(
          box.ns,
          ["curl", "-sS", "--max-time", "60", ...flags, "-o", got, `ftp://${net.inet.addr}/big.bin`],
          { timeoutMs: 70_000 },
        );
        assert.equal(r.code, 0, `${box.name}: ${r.stderr}`);
        assert.equal(sha(readFileSync(got)), want, `${box.name}: the download differs`);
      }
    });

  it("3000-byte UDP answers (fragments from the Internet) reach every inside host whole", async () => {
    for (const box of net.inside) {
      const r = await net.lab.exec(box.ns, [PY, BIG_UDP, "ask", net.inet.addr, "9100", "3000", "12"], {
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { sent: 12, whole: 12 }, `${box.name}: ${r.stdout}`);
    }
    // Some of the 36 datagrams hashed to the worker that does not hold their flow.
    const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
    assert.ok(s.engine.counters.fragments_handed_off > 0, JSON.stringify(s.engine.counters));
    assert.equal(s.engine.counters.drop_fragment_handoff_full, 0);
  });

  it("hairpin between hosts of the two workers, both ways: each sends first to the other's public endpoint", async () => {
    const [a, , c] = net.inside;
    for (const [peerBox, asker, port] of [
      [c, a, 5000],
      [a, c, 5001],
    ] as const) {
      const peer = net.lab.spawn(peerBox.ns, [PY, FIRST_CONTACT, String(port), net.inet.addr, "7000", "30"]);
      await peer.waitFor("sent");
      const flow = await waitUntil(`${peerBox.name}'s UDP mapping is in the table`, async () =>
        (JSON.parse(await masq.cli(["conns", "--json", "--host", peerBox.addr])) as ConnsReply).flows.find(
          (f) => f.protocol === "udp" && f.inside.port === port,
        ),
      );
      const answer = await udpAsk(
        net.lab,
        asker.ns,
        net.publicAddr,
        flow.outside.port,
        `hello-from-${asker.name}`,
        {
          sourcePort: 6000 + port,
        },
      );
      assert.ok(await peer.waitExit(15_000), `${peerBox.name}'s peer did not end: ${peer.stdout}`);
      assert.match(
        peer.stdout,
        new RegExp(`got hello-from-${asker.name} from ${net.publicAddr.replaceAll(".", "\\.")}:\\d+`),
      );
      assert.equal(answer.code, 0, `${asker.name} got no answer: ${answer.stderr} ${peer.stdout}`);
      assert.equal(answer.stdout.trim(), "answer-from-a");
    }
    const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
    assert.ok(s.engine.counters.hairpin_handed_off >= 4, JSON.stringify(s.engine.counters));
    assert.ok(s.engine.counters.hairpinned >= 4, JSON.stringify(s.engine.counters));
  });
});
