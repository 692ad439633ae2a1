// End to end: the IRC DCC ALG with a real IRC server (ngircd) on the Internet host and two
// scripted IRC clients (test/e2e/fixtures/dcc-peer.py): an inside client offers a file (DCC SEND)
// or a chat (DCC CHAT) to an outside client, which connects back through the gateway; a resumed
// transfer exercises DCC RESUME (coming in: the port mapped back) and DCC ACCEPT (going out).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PEER = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "dcc-peer.py");
const PY = "/usr/bin/python3";
const SIZE = 3 * 1024 * 1024 + 4321;

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`IRC DCC ALG, ${mode} mode, address-port-dependent filtering`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let ircd: LabProcess;
    let tmp: string;
    let file: string;
    let want: string;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqalg-irc-"));
      chmodSync(tmp, 0o755);
      const body = randomBytes(SIZE);
      want = createHash("sha256").update(body).digest("hex");
      file = join(tmp, "big.bin");
      writeFileSync(file, body);
      net = await buildMasqNetwork({ prefix: "masqalg", mode });
      const conf = join(tmp, "ngircd.conf");
      writeFileSync(
        conf,
        [
          "[Global]",
          "Name = irc.masq.test",
          "Info = masq test",
          `Listen = ${net.inet.addr}`,
          "Ports = 6667",
          `PidFile = ${join(tmp, "ngircd.pid")}`,
          "MotdPhrase = hello",
          "[Limits]",
          "MaxConnectionsIP = 0",
          "[Options]",
          "DNS = no",
          "Ident = no",
          "PAM = no",
          "",
        ].join("\n"),
      );
      ircd = net.lab.spawn(net.inet.ns, ["/usr/sbin/ngircd", "-n", "-f", conf]);
      await ircd.waitFor(/listening on/i, 10_000);
      masq = await startMasq(net, { flags: ["--filtering", "address-port-dependent"] });
    });

    after(async () => {
      try {
        await ircd?.kill();
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

    /** Runs the outside taker (on the Internet host) and the inside offerer; returns both outputs. */
    async function dcc(kind: "send" | "resume" | "chat", n: number) {
      const alice = `alice${n}`;
      const bob = `bob${n}`;
      const taker = net.lab.spawn(net.inet.ns, [PY, PEER, "take", net.inet.addr, bob, file, kind, alice]);
      try {
        const offerer = await net.lab.exec(
          net.inside[0].ns,
          [PY, PEER, "offer", net.inet.addr, alice, bob, file, kind],
          { timeoutMs: 60_000 },
        );
        await taker.waitExit(20_000);
        assert.equal(
          offerer.code,
          0,
          `offerer: ${offerer.stdout}${offerer.stderr}\ntaker: ${taker.stdout}${taker.stderr}`,
        );
        assert.equal(taker.exitCode, 0, `taker: ${taker.stdout}${taker.stderr}`);
        const offer = /offer (\S+) (\d+)/.exec(taker.stdout);
        assert.ok(offer, taker.stdout);
        const listen = /listen (\d+)/.exec(offerer.stdout);
        assert.ok(listen);
        assert.equal(offer[1], net.publicAddr, "the offer names the public address");
        return {
          taker: taker.stdout,
          offerer: offerer.stdout,
          outPort: Number(offer[2]),
          inPort: Number(listen[1]),
        };
      } finally {
        await taker.kill();
      }
    }

    it(`DCC SEND from an inside client to an outside client: ${SIZE} bytes arrive byte-exact`, async () => {
      const r = await dcc("send", 1);
      assert.match(r.taker, new RegExp(`sha ${want} ${SIZE}`));
    });

    it("DCC SEND resumed: RESUME reaches the inside client with its own port, ACCEPT leaves with the outside one", async () => {
      const r = await dcc("resume", 2);
      assert.match(r.offerer, new RegExp(`resume-port ${r.inPort}\\b`));
      assert.match(r.taker, new RegExp(`accept-port ${r.outPort}\\b`));
      assert.match(r.taker, new RegExp(`sha ${want} ${SIZE}`));
    });

    it("passive (reverse) DCC SEND from an inside client: the offer shows the public address; the transfer arrives byte-exact", async () => {
      const taker = net.lab.spawn(net.inet.ns, [
        PY,
        PEER,
        "take",
        net.inet.addr,
        "bob4",
        file,
        "passive",
        "alice4",
      ]);
      try {
        const offerer = await net.lab.exec(
          net.inside[0].ns,
          [PY, PEER, "offer", net.inet.addr, "alice4", "bob4", file, "passive"],
          { timeoutMs: 60_000 },
        );
        await taker.waitExit(20_000);
        assert.equal(
          offerer.code,
          0,
          `offerer: ${offerer.stdout}${offerer.stderr}\ntaker: ${taker.stdout}${taker.stderr}`,
        );
        assert.equal(taker.exitCode, 0, `taker: ${taker.stdout}${taker.stderr}`);
        assert.match(taker.stdout, new RegExp(`offer ${net.publicAddr.replaceAll(".", "\\.")} 0\\b`));
        assert.match(offerer.stdout, /answer \S+ \d+ 77/);
        assert.match(taker.stdout, new RegExp(`sha ${want} ${SIZE}`));
      } finally {
        await taker.kill();
      }
    });

    it("DCC CHAT from an inside client", async () => {
      const r = await dcc("chat", 3);
      assert.match(r.taker, /chat hello from alice3/);
      assert.match(r.offerer, /chat hello from bob3/);
      const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      const c = s.engine.counters;
      // An offer names the inside address and is always rewritten; RESUME/ACCEPT name only the
      // port, which pool mode keeps (its range is the whole address), so there they pass unchanged.
      assert.ok(c.alg_rewrites >= (mode === "pool" ? 4 : 5), JSON.stringify(c));
      assert.equal(c.alg_malformed, 0);
    });
  });
}
