// End to end: masq as the systemd unit runs it (contrib/masq.service, contrib/masq.toml). The
// unit passes systemd-analyze verify; the example config passes a dry run on a real gateway; and
// masq runs with the unit's capabilities alone (root's uid, CAP_NET_ADMIN and CAP_NET_RAW, as
// CapabilityBoundingSet gives it): it sets up the host, translates, serves NAT-PMP/PCP and UPnP
// (SO_BINDTODEVICE), reloads, and undoes everything at SIGTERM.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MASQ_BIN, masqRunArgv, masqSocket, PACKAGE_ROOT } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const UNIT = join(PACKAGE_ROOT, "contrib", "masq.service");
const EXAMPLE = join(PACKAGE_ROOT, "contrib", "masq.toml");

/** The unit's capability set, for setpriv: what CapabilityBoundingSet leaves root's uid. */
function unitCapabilities(): string[] {
  const line = /^CapabilityBoundingSet=(.*)$/m.exec(readFileSync(UNIT, "utf8"))?.[1] ?? "";
  return line.split(/\s+/).map((c) => c.replace(/^CAP_/, "").toLowerCase());
}

function hasProgram(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("the systemd unit", () => {
  it("passes systemd-analyze verify", {
    skip: hasProgram("systemd-analyze") ? false : "no systemd-analyze",
  }, () => {
    // masq is not installed here: the unit names it on systemd's search path, so verify a copy
    // that names this checkout's CLI instead.
    const dir = mkdtempSync(join(tmpdir(), "masqrl-unit-"));
    try {
      const copy = join(dir, "masq.service");
      writeFileSync(copy, readFileSync(UNIT, "utf8").replace(/^(Exec\w+=)masq /gm, `$1${MASQ_BIN} `));
      const out = execFileSync("systemd-analyze", ["verify", copy], { encoding: "utf8", stdio: "pipe" });
      assert.equal(out.trim(), "");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names masq's default control socket in its RuntimeDirectory", () => {
    const unit = readFileSync(UNIT, "utf8");
    assert.match(unit, /^RuntimeDirectory=masq$/m);
    assert.match(unit, /^ExecReload=masq reload$/m);
    assert.deepEqual(unitCapabilities(), ["net_admin", "net_raw"]);
  });
});

describe("masq with the unit's capabilities only", { skip }, () => {
  let net: MasqNetwork;
  let tmp: string;
  let masq: LabProcess | undefined;
  let before0 = "";
  const snapshot = () => net.lab.run(net.gate.ns, ["ip", "rule", "show"]);
  const cli = (...args: string[]) =>
    net.lab.exec(net.gate.ns, [process.execPath, MASQ_BIN, ...args, "--socket", masqSocket(net)], {
      timeoutMs: 30_000,
    });

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqrl-svc-"));
    net = await buildMasqNetwork({ prefix: "masqrl", mode: "interface" });
    before0 = await snapshot();
  });

  after(async () => {
    try {
      await masq?.kill("SIGTERM", 30_000);
    } finally {
      await net?.destroy();
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("the example config passes a dry run on the gateway (its interfaces named by flag)", async () => {
    const r = await net.lab.exec(net.gate.ns, [
      process.execPath,
      MASQ_BIN,
      "run",
      "--config",
      EXAMPLE,
      "--inside",
      net.gate.lan,
      "--outside",
      net.gate.wan,
      "--dry-run",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ip rule add pref 300 iif/);
  });

  it("sets up the host, translates, serves port mapping, reloads and cleans up", async () => {
    const config = join(tmp, "masq.toml");
    writeFileSync(
      config,
      `state_dir = "${join(tmp, "state")}"\n[portmap]\nenabled = true\n[upnp]\nenabled = true\n`,
    );
    const caps = unitCapabilities();
    masq = net.lab.spawn(
      net.gate.ns,
      [
        "setpriv",
        `--bounding-set=-all,${caps.map((c) => `+${c}`).join(",")}`,
        "--inh-caps=-all",
        "--",
        ...masqRunArgv(net, { config }),
      ],
      { env: { ...process.env, MASQ_LOG_FORMAT: "json" } },
    );
    await masq.waitFor(/masq ready/, 60_000);
    const status = readFileSync(`/proc/${masq.pid}/status`, "utf8");
    // CAP_NET_ADMIN (12) and CAP_NET_RAW (13): 0x3000, and nothing else.
    assert.match(status, /^CapEff:\s*0000000000003000$/m);
    assert.match(masq.stdout, /port mapping \(NAT-PMP\/PCP\) listening/);
    assert.match(masq.stdout, /UPnP IGD listening/);
    const ping = await net.lab.exec(net.inside[0].ns, ["ping", "-c", "1", "-W", "5", net.inet.addr]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    const reload = await cli("reload");
    assert.equal(reload.code, 0, reload.stderr);
    const status2 = await cli("status", "--interval", "0.2");
    assert.equal(status2.code, 0, status2.stderr);
    assert.match(status2.stdout, /^masq {6}interface mode, public /);
    assert.match(status2.stdout, /^reloads {3}1 ok, 0 refused, 0 failed$/m);
    await masq.kill("SIGTERM", 30_000);
    assert.equal(masq.exitCode, 0, masq.stderr.slice(-2000));
    assert.equal(await snapshot(), before0, "the rules are gone");
    assert.ok(!existsSync(masqSocket(net)), "the socket is gone");
  });
});
