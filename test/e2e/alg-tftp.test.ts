// End to end: the TFTP ALG with tftpd-hpa on the Internet host and the tftp-hpa client inside,
// under address-and-port-dependent filtering, where the server's answer from its new port
// (its transfer identifier, RFC 1350) would otherwise be refused.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const SIZE = 1024 * 1024 + 777;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`TFTP ALG, ${mode} mode, address-port-dependent filtering`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    const servers: LabProcess[] = [];
    let tmp: string;
    let srv: string;
    let want: string;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqalg-tftp-"));
      chmodSync(tmp, 0o777);
      srv = join(tmp, "srv");
      mkdirSync(srv);
      chmodSync(srv, 0o777);
      const body = randomBytes(SIZE);
      want = sha(body);
      writeFileSync(join(srv, "big.bin"), body);
      writeFileSync(join(tmp, "up.bin"), body);
      chmodSync(join(srv, "big.bin"), 0o644);
      chmodSync(join(tmp, "up.bin"), 0o644);
      net = await buildMasqNetwork({ prefix: "masqalg", mode });
      // -L: foreground; -c: uploads may create files; one server on the watched port 69 and
      // one on 6969, which the ALG does not watch (the control case).
      for (const port of [69, 6969]) {
        const p = net.lab.spawn(net.inet.ns, [
          "/usr/sbin/in.tftpd",
          "-L",
          "-c",
          "-u",
          "root",
          "-a",
          `${net.inet.addr}:${port}`,
          "-s",
          srv,
        ]);
        servers.push(p);
      }
      // in.tftpd says nothing when it is ready: wait for its bound sockets.
      for (const port of [69, 6969]) await waitListening(net.lab, net.inet.ns, "udp", port);
      for (const p of servers) assert.ok(p.running, p.stderr);
      masq = await startMasq(net, { flags: ["--filtering", "address-port-dependent"] });
    });

    after(async () => {
      try {
        for (const p of servers) await p.kill();
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

    const tftp = (port: number, cmd: string) =>
      net.lab.exec(
        net.inside[0].ns,
        ["sh", "-c", `cd ${tmp} && timeout 60 tftp -m binary ${net.inet.addr} ${port} -c ${cmd}`],
        {
          timeoutMs: 70_000,
        },
      );

    it(`get and put of a ${SIZE}-byte file arrive byte-exact`, async () => {
      const g = await tftp(69, "get big.bin got.bin");
      assert.equal(g.code, 0, g.stdout + g.stderr);
      assert.equal(sha(readFileSync(join(tmp, "got.bin"))), want, "download differs");
      const p = await tftp(69, "put up.bin up-69.bin");
      assert.equal(p.code, 0, p.stdout + p.stderr);
      assert.equal(sha(readFileSync(join(srv, "up-69.bin"))), want, "upload differs");
      const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      assert.ok(s.engine.counters.alg_expectations >= 2, JSON.stringify(s.engine.counters));
    });

    it("control: without the ALG (port 6969 is not watched) the server's answer is filtered", async () => {
      const before0 = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      const g = await net.lab.exec(
        net.inside[0].ns,
        ["sh", "-c", `cd ${tmp} && tftp ${net.inet.addr} 6969`],
        {
          input: "binary\nrexmt 1\ntimeout 3\nget big.bin nope.bin\nquit\n",
          timeoutMs: 15_000,
        },
      );
      assert.match(g.stdout + g.stderr, /timed out/i, g.stdout + g.stderr);
      const after0 = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      assert.ok(after0.engine.counters.drop_filtered > before0.engine.counters.drop_filtered);
    });
  });
}
