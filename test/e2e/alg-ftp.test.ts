// End to end: the FTP ALG with a real FTP server (pyftpdlib, which refuses a PORT/EPRT naming an
// address other than the control connection's, and a passive data connection from one) on the
// Internet host and real curl inside, active (EPRT, PORT) and passive (EPSV, PASV), downloads and
// uploads of a multi-megabyte file checked byte for byte, in every filtering mode and both address
// modes. Every rewrite changes the payload length here (192,168,0,2 becomes 198,51,100,2 or
// 198,51,100,100), so the sequence-number correction carries every transfer.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";
import type { Filtering } from "../../src/nat/config.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PY = "/usr/bin/python3";
const SIZE = 6 * 1024 * 1024 + 12345;
/**
 * How long an expectation waits for its connection: short, so the lapse is seen, yet several
 * times what the test does between a PORT command and the data connection on a busy machine.
 */
const EXPECT_TIMEOUT_SEC = 8;

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const cases: Array<{ mode: MasqMode; filtering: Filtering }> = [
  { mode: "interface", filtering: "address-port-dependent" },
  { mode: "interface", filtering: "address-dependent" },
  { mode: "interface", filtering: "endpoint-independent" },
  { mode: "pool", filtering: "address-port-dependent" },
  { mode: "pool", filtering: "endpoint-independent" },
];

// MASQ_E2E_ONLY=<mode>:<filtering> runs one case (while debugging).
const only = process.env.MASQ_E2E_ONLY;
for (const { mode, filtering } of cases.filter((c) => !only || only === `${c.mode}:${c.filtering}`)) {
  describe(`FTP ALG, ${mode} mode, ${filtering} filtering`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let ftpd: LabProcess;
    let tmp: string;
    let pub: string;
    let want: string;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqalg-ftp-"));
      chmodSync(tmp, 0o755);
      const srv = join(tmp, "srv");
      mkdirSync(srv);
      chmodSync(srv, 0o777);
      const body = randomBytes(SIZE);
      want = sha(body);
      writeFileSync(join(srv, "big.bin"), body);
      writeFileSync(join(tmp, "up.bin"), body);
      net = await buildMasqNetwork({ prefix: "masqalg", mode });
      pub = net.publicAddr;
      ftpd = net.lab.spawn(net.inet.ns, [
        PY,
        "-m",
        "pyftpdlib",
        "-i",
        net.inet.addr,
        "-p",
        "21",
        "-w",
        "-d",
        srv,
      ]);
      await ftpd.waitFor(/starting FTP server/i, 10_000);
      const config = join(tmp, "masq.toml");
      // A fixed port seed: whether a rewrite changes the length also depends on how many digits
      // the allocated port has, and the counters test below wants every rewrite resized.
      writeFileSync(
        config,
        `port_seed = 0\n[alg]\nexpect_timeout = ${EXPECT_TIMEOUT_SEC}\n[alg.ftp]\nports = [21, 2121]\n`,
      );
      masq = await startMasq(net, { config, flags: ["--filtering", filtering] });
    });

    after(async () => {
      try {
        await ftpd?.kill();
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

    const curl = async (args: string[]) => {
      const box = net.inside[0];
      const r = await net.lab.exec(box.ns, ["curl", "-sS", "--max-time", "60", ...args], {
        timeoutMs: 70_000,
      });
      assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}\n${ftpd.stderr.slice(-1500)}`);
      return r;
    };

    for (const [label, flags] of [
      ["active EPRT", ["--ftp-port", "-"]],
      ["active PORT", ["--ftp-port", "-", "--disable-eprt"]],
      ["passive EPSV", []],
      ["passive PASV", ["--disable-epsv"]],
    ] as const) {
      it(`${label}: a ${SIZE}-byte download and upload arrive byte-exact`, async () => {
        const got = join(tmp, `got-${label.replace(/ /g, "-")}.bin`);
        await curl([...flags, "-o", got, `ftp://${net.inet.addr}/big.bin`]);
        assert.equal(sha(readFileSync(got)), want, "download differs");
        const name = `up-${label.replace(/ /g, "-")}.bin`;
        await curl([...flags, "-T", join(tmp, "up.bin"), `ftp://${net.inet.addr}/${name}`]);
        assert.equal(sha(readFileSync(join(tmp, "srv", name))), want, "upload differs");
      });
    }

    it("control: on a port the ALG does not watch, active mode fails (the server refuses the inside address) and passive works", async () => {
      const other = net.lab.spawn(net.inet.ns, [
        PY,
        "-m",
        "pyftpdlib",
        "-i",
        net.inet.addr,
        "-p",
        "2122",
        "-d",
        join(tmp, "srv"),
      ]);
      try {
        await other.waitFor(/starting FTP server/i, 10_000);
        const box = net.inside[0];
        const url = `ftp://${net.inet.addr}:2122/big.bin`;
        const active = await net.lab.exec(
          box.ns,
          ["curl", "-sS", "--max-time", "10", "--ftp-port", "-", "--disable-eprt", "-o", "/dev/null", url],
          {
            timeoutMs: 20_000,
          },
        );
        assert.notEqual(active.code, 0, "active mode cannot work without the ALG");
        // pyftpdlib logs the refusal just after sending it: wait for the line, not a snapshot.
        await other.waitFor(/foreign address/i, 10_000);
        const passive = await net.lab.exec(
          box.ns,
          ["curl", "-sS", "--max-time", "30", "-o", "/dev/null", url],
          {
            timeoutMs: 40_000,
          },
        );
        assert.equal(passive.code, 0, passive.stderr);
      } finally {
        await other.kill();
      }
    });

    it("the server saw every connection from the public address (passive data connections included)", () => {
      // pyftpdlib logs "<ip>:<port>-[user] ..." per command; none may come from an inside address.
      const peers = [...ftpd.stderr.matchAll(/(\d+\.\d+\.\d+\.\d+):\d+-\[/g)].map((m) => m[1]);
      assert.ok(peers.length > 0, ftpd.stderr.slice(-1000));
      assert.deepEqual([...new Set(peers)], [pub]);
      assert.doesNotMatch(ftpd.stderr, /foreign address/i);
    });

    it("counters: rewrites with length changes, no malformed commands", async () => {
      const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      const c = s.engine.counters;
      assert.ok(c.alg_rewrites >= 4, JSON.stringify(c));
      assert.ok(c.alg_expectations >= 4);
      assert.ok(c.alg_segments_resized >= 4, "the rewrites changed the payload length");
      assert.equal(c.alg_malformed, 0);
      assert.equal(c.alg_expectations_refused, 0);
    });

    it("an expectation (configured port 2121) is listed by masq conns, admits one connection from the server, then lapses", async () => {
      const box = net.inside[0];
      // -d -d: socat says when it listens, so the client never races the listener.
      const server = net.lab.spawn(net.inet.ns, [
        "socat",
        "-d",
        "-d",
        "-u",
        "TCP-LISTEN:2121,reuseaddr",
        "STDOUT",
      ]);
      const dataListener = net.lab.spawn(box.ns, [
        "socat",
        "-d",
        "-d",
        "-u",
        "TCP-LISTEN:40001,reuseaddr",
        "STDOUT",
      ]);
      await server.waitFor(/listening on/, 10_000);
      await dataListener.waitFor(/listening on/, 10_000);
      const client = net.lab.spawn(box.ns, ["socat", "-", `TCP:${net.inet.addr}:2121`], { stdin: true });
      try {
        await server.waitFor(/accepting connection/, 10_000);
        client.child.stdin?.write("PORT 192,168,0,2,156,65\r\nPORT 192,168,0,2,156,66\r\n");
        const seen = await server.waitFor(/PORT [\d,]+\r?\nPORT [\d,]+\r?\n/, 10_000);
        const ports = [...seen.matchAll(/PORT ([\d,]+)/g)].map((m) => m[1].split(",").map(Number));
        const pubParts = pub.split(".").map(Number);
        for (const p of ports) assert.deepEqual(p.slice(0, 4), pubParts, seen);
        const out1 = ports[0][4] * 256 + ports[0][5];
        const out2 = ports[1][4] * 256 + ports[1][5];

        const reply = JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply;
        const exp = (reply.pins ?? []).filter((p) => p.origin === "ftp");
        assert.equal(exp.length, 2, JSON.stringify(reply.pins));
        const e1 = exp.find((p) => p.inside.port === 40001);
        assert.ok(e1);
        assert.equal(e1.outside.port, out1);
        assert.equal(e1.outside.addr, pub);
        assert.equal(e1.remote, net.inet.addr);
        assert.ok(e1.expiresInSec !== null && e1.expiresInSec <= EXPECT_TIMEOUT_SEC);

        // The server's data connection to the announced port reaches the inside listener (before
        // anything else: the expectation lives EXPECT_TIMEOUT_SEC from the PORT command).
        const d = await net.lab.exec(net.inet.ns, ["socat", "-u", "-", `TCP:${pub}:${out1}`], {
          input: "data through the expectation\n",
          timeoutMs: 10_000,
        });
        assert.equal(d.code, 0, d.stderr);
        await dataListener.waitFor(/data through the expectation/, 10_000);
        // The second expectation is still waiting, and shown to people too.
        assert.match(await masq.cli(["conns"]), /ftp/);
        // It lapses after expect_timeout and is gone from the listing.
        let later: ConnsReply["pins"] = [];
        await waitUntil(
          "the FTP expectations lapse",
          async () => {
            later = (JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply).pins ?? [];
            return later.every((p) => p.origin !== "ftp");
          },
          { describe: () => JSON.stringify(later), intervalMs: 500 },
        );
        const late = await net.lab.exec(
          net.inet.ns,
          ["socat", "-u", "-", `TCP:${pub}:${out2},connect-timeout=2`],
          {
            input: "late\n",
            timeoutMs: 5000,
          },
        );
        assert.notEqual(late.code, 0, "a lapsed expectation admits nothing");
      } finally {
        await client.kill();
        await server.kill();
        await dataListener.kill();
      }
    });
  });
}

// The same through vsftpd, whose own checks refuse a PORT/EPRT naming an address other than the
// control connection's (port_promiscuous=NO) and a passive data connection from one
// (pasv_promiscuous=NO): both defaults.
describe("FTP ALG with vsftpd, interface mode, address-port-dependent filtering", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let ftpd: LabProcess;
  let tmp: string;
  let want: string;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqalg-vsftpd-"));
    chmodSync(tmp, 0o755);
    const anon = join(tmp, "anon");
    mkdirSync(anon);
    chmodSync(anon, 0o755); // vsftpd refuses a writable anonymous root
    mkdirSync(join(anon, "up"));
    chmodSync(join(anon, "up"), 0o777);
    mkdirSync(join(tmp, "empty"));
    const body = randomBytes(SIZE);
    want = sha(body);
    writeFileSync(join(anon, "big.bin"), body);
    chmodSync(join(anon, "big.bin"), 0o644);
    writeFileSync(join(tmp, "up.bin"), body);
    net = await buildMasqNetwork({ prefix: "masqalg", mode: "interface" });
    const conf = join(tmp, "vsftpd.conf");
    writeFileSync(
      conf,
      [
        "listen=YES",
        "listen_ipv6=NO",
        `listen_address=${net.inet.addr}`,
        "background=NO",
        "anonymous_enable=YES",
        "local_enable=NO",
        "no_anon_password=YES",
        `anon_root=${anon}`,
        "write_enable=YES",
        "anon_upload_enable=YES",
        "anon_umask=022",
        "connect_from_port_20=YES",
        "seccomp_sandbox=NO",
        `secure_chroot_dir=${join(tmp, "empty")}`,
        "xferlog_enable=NO",
        "",
      ].join("\n"),
    );
    ftpd = net.lab.spawn(net.inet.ns, ["/usr/sbin/vsftpd", conf]);
    // vsftpd says nothing when it is ready: wait for its listening socket.
    await waitListening(net.lab, net.inet.ns, "tcp", 21);
    assert.ok(ftpd.running, ftpd.stderr + ftpd.stdout);
    masq = await startMasq(net, { flags: ["--filtering", "address-port-dependent"] });
  });

  after(async () => {
    try {
      await ftpd?.kill();
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  });

  for (const [label, flags] of [
    ["active EPRT", ["--ftp-port", "-"]],
    ["active PORT", ["--ftp-port", "-", "--disable-eprt"]],
    ["passive PASV", ["--disable-epsv"]],
  ] as const) {
    it(`${label}: download and upload byte-exact`, async () => {
      const box = net.inside[0];
      const got = join(tmp, `got-${label.replace(/ /g, "-")}.bin`);
      const name = `up-${label.replace(/ /g, "-")}.bin`;
      for (const args of [
        [...flags, "-o", got, `ftp://${net.inet.addr}/big.bin`],
        [...flags, "-T", join(tmp, "up.bin"), `ftp://${net.inet.addr}/up/${name}`],
      ]) {
        const r = await net.lab.exec(box.ns, ["curl", "-sS", "--max-time", "60", ...args], {
          timeoutMs: 70_000,
        });
        assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}`);
      }
      assert.equal(sha(readFileSync(got)), want, "download differs");
      assert.equal(sha(readFileSync(join(tmp, "anon", "up", name))), want, "upload differs");
    });
  }
});

// An inside FTP server published by a port forward: its PASV (227) and EPSV (229) replies name
// its inside address and port, which the ALG rewrites to the public address and a pinned port
// that admits the outside client's data connection.
for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`FTP ALG for an inside server behind a forward, ${mode} mode, address-port-dependent filtering`, {
    skip,
  }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let ftpd: LabProcess;
    let tmp: string;
    let want: string;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqalg-ftpfwd-"));
      chmodSync(tmp, 0o755);
      const srv = join(tmp, "srv");
      mkdirSync(srv);
      chmodSync(srv, 0o777);
      const body = randomBytes(SIZE);
      want = sha(body);
      writeFileSync(join(srv, "big.bin"), body);
      writeFileSync(join(tmp, "up.bin"), body);
      net = await buildMasqNetwork({ prefix: "masqalg", mode });
      const inside = net.inside[0];
      ftpd = net.lab.spawn(inside.ns, [
        PY,
        "-m",
        "pyftpdlib",
        "-i",
        inside.addr,
        "-p",
        "21",
        "-w",
        "-d",
        srv,
      ]);
      await ftpd.waitFor(/starting FTP server/i, 10_000);
      const config = join(tmp, "masq.toml");
      writeFileSync(
        config,
        `[[forward]]\noutside = "21/tcp"\ninside = "${inside.addr}:21"\nnote = "ftp server"\n`,
      );
      masq = await startMasq(net, { config, flags: ["--filtering", "address-port-dependent"] });
    });

    after(async () => {
      try {
        await ftpd?.kill();
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

    for (const [label, flags] of [
      ["passive EPSV", []],
      ["passive PASV", ["--disable-epsv"]],
      ["active PORT", ["--ftp-port", "-", "--disable-eprt"]],
    ] as const) {
      it(`${label} from an outside client: download and upload byte-exact`, async () => {
        const got = join(tmp, `got-${label.replace(/ /g, "-")}.bin`);
        const name = `up-${label.replace(/ /g, "-")}.bin`;
        for (const args of [
          [...flags, "-o", got, `ftp://${net.publicAddr}/big.bin`],
          [...flags, "-T", join(tmp, "up.bin"), `ftp://${net.publicAddr}/${name}`],
        ]) {
          const r = await net.lab.exec(net.inet.ns, ["curl", "-sS", "--max-time", "60", ...args], {
            timeoutMs: 70_000,
          });
          assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}\n${ftpd.stderr.slice(-1500)}`);
        }
        assert.equal(sha(readFileSync(got)), want, "download differs");
        assert.equal(sha(readFileSync(join(tmp, "srv", name))), want, "upload differs");
      });
    }

    it("the passive replies were rewritten", async () => {
      const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      // PASV names the inside address, so its two replies are always rewritten. EPSV names only
      // the port: pool mode keeps the server's data port (its range is the whole address, RFC
      // 4787 REQ-3), so there its replies need no change; interface mode maps it into its range.
      const least = mode === "pool" ? 2 : 4;
      assert.ok(s.engine.counters.alg_rewrites >= least, JSON.stringify(s.engine.counters));
      assert.equal(s.engine.counters.alg_foreign_address, 0);
    });
  });
}
