// A restart that keeps the connection table (issue 15): `masq stop --keep-state` then `masq run`
// with the same configuration. An inside host's long TCP session (a line exchanged every 20 ms)
// and a rate-limited download carry on with no reset; nothing with an inside source leaves on the
// outside meanwhile (the host setup and the persistent TUNs stay); the gap is measured and
// printed. A snapshot another masq version wrote is taken up when its state layout is this one's
// (an upgrade), refused when it is not. NAT-PMP and UPnP mappings survive: the Internet still
// reaches them, a renewal keeps the port, the epoch goes on, `upnpc -l` still lists them. A
// tampered snapshot is refused with its reason and masq starts empty; `masq stop` alone undoes
// the host setup like SIGTERM, and says so when no masq runs.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { masqVersion, snapshotFileFor } from "../../src/control/keep-state.ts";
import { defaultStateFile } from "../../src/host/apply.ts";
import { PcapReader } from "../../src/io/pcap.ts";
import { bodySha256 } from "../../src/lab/body.ts";
import { labScript, MASQ_BIN, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, gatewaySnapshot, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";
import { withHeader } from "../helpers/snapshot-header.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PY = "/usr/bin/python3";
const SESSION = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "line-session.py");
const ECHO_PORT = 7000;
/** The download: 12 MB at 1 MB/s, so it runs across the restart. */
const DOWNLOAD_BYTES = 12 * 1024 * 1024;

/** Waits (bounded) for `check`, polling every 50 ms. */
async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
}

/** Progress of the line session: the latest "echo N" it printed. */
const echoes = (p: LabProcess) => Number([...p.stdout.matchAll(/^echo (\d+)$/gm)].at(-1)?.[1] ?? 0);

describe("restart with the table kept (masq stop --keep-state, then masq run)", { skip }, () => {
  let net: MasqNetwork;
  let tmp: string;
  let snapshot: string;
  const started: MasqProcess[] = [];

  const start = async () => {
    const m = await startMasq(net);
    started.push(m);
    return m;
  };
  const masqCli = (args: string[]) =>
    net.lab.exec(net.gate.ns, [process.execPath, MASQ_BIN, ...args], { timeoutMs: 60_000 });
  const tunPersistent = async (tun: string) => {
    const links = JSON.parse(
      await net.lab.run(net.gate.ns, ["ip", "-j", "-d", "link", "show", "dev", tun]),
    ) as Array<{
      linkinfo?: { info_data?: { persist?: boolean } };
    }>;
    return links[0]?.linkinfo?.info_data?.persist === true;
  };
  const log = (m: MasqProcess) => m.proc.stdout + m.proc.stderr;
  /** The line session from the first inside host, until `stopFile` exists or `limitSec` passed. */
  const lineSession = (stopFile: string, limitSec: number) =>
    net.lab.spawn(net.inside[0].ns, [
      PY,
      SESSION,
      net.inet.addr,
      String(ECHO_PORT),
      stopFile,
      String(limitSec),
    ]);

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masq-keepstate-"));
    net = await buildMasqNetwork({ prefix: "masqks", mode: "interface" });
    snapshot = snapshotFileFor(defaultStateFile("masq0", { dir: "/run/masq", netns: net.gate.ns }));
    const echo = net.lab.spawn(net.inet.ns, ["socat", `TCP-LISTEN:${ECHO_PORT},reuseaddr,fork`, "PIPE"]);
    const web = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
    await until(() => echo.running && web.stdout.length > 0, "the Internet host's servers are up").catch(
      () => {},
    );
    await sleep(300);
  });

  after(async () => {
    try {
      for (const m of started) if (m.proc.running) await m.stop();
    } finally {
      await net?.destroy();
      // The snapshot and what was set aside of it, of this test's gateway only.
      const dir = dirname(snapshot);
      for (const f of existsSync(dir) ? readdirSync(dir) : [])
        if (f.startsWith(basename(snapshot))) rmSync(join(dir, f), { force: true });
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("an inside host's TCP session and download survive with no reset; nothing untranslated leaves meanwhile", async () => {
    const first = await start();
    // Everything the gateway sends towards the ISP, from before the stop to after the restart.
    const pcap = join(tmp, "outside.pcap");
    const capture = net.lab.spawn(net.isp.ns, [
      "tcpdump",
      "-i",
      net.isp.toGateDev,
      "-n",
      "-U",
      "-Q",
      "in",
      "-w",
      pcap,
      "src net 192.168.0.0/24",
    ]);
    await capture.waitFor(/listening on/, 10_000);
    const stopFile = join(tmp, "stop-session");
    const session = lineSession(stopFile, 90);
    await until(() => echoes(session) >= 20, "the line session runs", 20_000);
    const file = join(tmp, "download");
    const download = net.lab.spawn(net.inside[1].ns, [
      "curl",
      "-sS",
      "--limit-rate",
      "1M",
      "-o",
      file,
      "-w",
      "%{http_code} %{size_download}",
      `http://${net.inet.addr}/bytes/${DOWNLOAD_BYTES}`,
    ]);
    await until(() => existsSync(file) && statSync(file).size > 1024 * 1024, "the download runs", 20_000);

    const began = performance.now();
    const stop = await masqCli(["stop", "--keep-state", "--socket", first.socket]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /stopped; its state, TUNs and host setup are kept/);
    assert.ok(!first.proc.running, "masq stop returns once the process is gone");
    assert.match(log(first), /state kept/);
    assert.ok(existsSync(snapshot), "the snapshot is in state_dir");
    assert.ok(await tunPersistent("masq0"), "the inside TUN outlives the process");
    assert.ok(await tunPersistent("masq0-out"), "the outside TUN outlives the process");
    const atStop = echoes(session);

    const second = await start();
    const downMs = Math.round(performance.now() - began);
    assert.match(log(second), /state restored from the snapshot/);
    assert.ok(!existsSync(snapshot), "the snapshot is removed once taken up");
    assert.equal(await tunPersistent("masq0"), false, "the TUN goes with the new process again");
    await until(
      () => echoes(session) >= atStop + 30,
      "the line session carries on after the restart",
      30_000,
    );
    const conns = await second.cli(["conns", "--json", "--host", net.inside[0].addr, "--proto", "tcp"]);
    assert.match(conns, /"state":"established"/, "the session's flow came back established");
    writeFileSync(stopFile, "");
    assert.ok(await session.waitExit(40_000), "the line session ends");
    const result = JSON.parse(session.stdout.trim().split("\n").at(-1) ?? "{}") as {
      lines: number;
      longestMs: number;
      error: string | null;
    };
    assert.equal(result.error, null, "the session never broke");
    assert.ok(await download.waitExit(60_000), "the download ends");
    assert.equal(download.exitCode, 0, download.stderr);
    assert.equal(download.stdout, `200 ${DOWNLOAD_BYTES}`);
    assert.equal(bodySha256(DOWNLOAD_BYTES), sha256Of(file), "every byte arrived, in order");

    await capture.kill("SIGINT");
    assert.deepEqual(packetsIn(pcap), 0, "no packet with an inside source left on the outside");
    process.stdout.write(
      `# keep-state restart: masq stop --keep-state to the new masq ready ${downMs} ms; ` +
        `longest gap in the line session ${result.longestMs} ms (${result.lines} lines, no reset)\n`,
    );
    await second.stop();
  });

  it("an upgrade: a snapshot another masq version wrote with this state layout is taken up, the session carries on", async () => {
    const first = await start();
    const stopFile = join(tmp, "stop-upgrade");
    const session = lineSession(stopFile, 60);
    await until(() => echoes(session) >= 20, "the line session runs", 20_000);
    const stop = await masqCli(["stop", "--keep-state", "--socket", first.socket]);
    assert.equal(stop.code, 0, stop.stderr);
    // As if the masq that stopped was the one before the upgrade: only its version differs.
    writeFileSync(snapshot, withHeader(readFileSync(snapshot), { masqVersion: "0.0.1-before-upgrade" }));
    const atStop = echoes(session);
    const second = await start();
    assert.match(
      log(second),
      new RegExp(
        `snapshot written by masq 0\\.0\\.1-before-upgrade, taken up by masq ${masqVersion().replaceAll(".", "\\.")}: the state layout is the same`,
      ),
    );
    assert.match(log(second), /state restored from the snapshot/);
    await until(
      () => echoes(session) >= atStop + 30,
      "the line session carries on after the upgrade",
      30_000,
    );
    writeFileSync(stopFile, "");
    assert.ok(await session.waitExit(40_000), "the line session ends");
    const result = JSON.parse(session.stdout.trim().split("\n").at(-1) ?? "{}") as { error: string | null };
    assert.equal(result.error, null, "the session never broke");

    // Another layout (what an upgrade that changed the tables writes): refused, starting empty.
    const stop2 = await masqCli(["stop", "--keep-state", "--socket", second.socket]);
    assert.equal(stop2.code, 0, stop2.stderr);
    writeFileSync(
      snapshot,
      withHeader(readFileSync(snapshot), { masqVersion: "9.9.9", stateLayout: "00000000deadbeef" }),
    );
    const third = await start();
    assert.match(
      log(third),
      /refused: state layout changed \(written by masq 9\.9\.9 with layout 00000000deadbeef, this is masq \S+ with layout [0-9a-f]{16}\); masq starts with an empty table/,
    );
    const stats = JSON.parse(await third.cli(["stats", "--json"])) as { engine: { flows: number } };
    assert.equal(stats.engine.flows, 0, "the table is empty");
    await third.stop();
  });

  it("NAT-PMP and UPnP mappings survive: reached, renewed on the same port, the epoch going on, listed", async () => {
    const config = join(tmp, "portmap.toml");
    writeFileSync(config, "[portmap]\nenabled = true\nmin_lifetime = 1\n[upnp]\nenabled = true\n");
    const abox = net.inside[0].ns;
    const aAddr = net.inside[0].addr;
    const services = [8080, 8081, 8082].map((port) =>
      net.lab.spawn(abox, [
        ...labScript("inet-service"),
        "--http",
        String(port),
        "--udp",
        String(port - 1000),
      ]),
    );
    try {
      await Promise.all(services.map((p) => p.waitFor(/"proto":"udp"/, 30_000)));
      const natpmpc = async (...args: string[]) => {
        const r = await net.lab.exec(abox, ["natpmpc", "-g", "192.168.0.1", ...args], { timeoutMs: 15_000 });
        assert.equal(r.code, 0, `natpmpc ${args.join(" ")}: ${r.stdout}${r.stderr}`);
        return r.stdout;
      };
      const upnpc = async (...args: string[]) => {
        const r = await net.lab.exec(abox, ["upnpc", "-i", ...args], { timeoutMs: 30_000 });
        assert.equal(r.code, 0, `upnpc ${args.join(" ")}: ${r.stdout}${r.stderr}`);
        return r.stdout;
      };
      const fetchFromInternet = async (port: number) => {
        const r = await net.lab.exec(
          net.inet.ns,
          ["curl", "-sS", "--connect-timeout", "2", "--max-time", "5", `http://${net.publicAddr}:${port}/`],
          { timeoutMs: 10_000 },
        );
        return r.code === 0 ? r.stdout : null;
      };
      const epoch = (out: string) => Number(/epoch = (\d+)/.exec(out)?.[1]);
      /** Maps (or renews) 62090 and 18085 and checks each got the external port it asked for. */
      const mapWithNatPmp = async () => {
        for (const [pub, local] of [
          ["62090", "8080"],
          ["18085", "8081"],
        ] as const)
          assert.match(
            await natpmpc("-a", pub, local, "tcp", "600"),
            new RegExp(`Mapped public port ${pub} protocol TCP`),
          );
      };
      const first = await startMasq(net, { config });
      started.push(first);
      // One in masq's range, one beyond it (interface mode: rules of its own), one UPnP.
      await mapWithNatPmp();
      await upnpc("-e", "kept across", "-a", aAddr, "8082", "18086", "TCP");
      for (const port of [62090, 18085, 18086]) assert.ok(await fetchFromInternet(port), `${port} reached`);
      await sleep(2000);
      const epochBefore = epoch(await natpmpc());
      assert.ok(epochBefore >= 2, `epoch ${epochBefore}`);

      const stop = await masqCli(["stop", "--keep-state", "--socket", first.socket]);
      assert.equal(stop.code, 0, stop.stderr);
      const began = performance.now();
      const second = await startMasq(net, { config });
      started.push(second);
      assert.match(log(second), /port mappings taken up from the stopped masq/);
      // Reached again with nothing asked: the pins came back with the lease table.
      for (const port of [62090, 18085, 18086]) {
        let body: string | null = null;
        await until(
          async () => {
            body = await fetchFromInternet(port);
            return body !== null;
          },
          `${port} reached after the restart`,
          15_000,
        );
        assert.match(body ?? "", /you came from 203\.0\.113\.10:/);
      }
      const epochAfter = epoch(await natpmpc());
      const downSec = (performance.now() - began) / 1000;
      assert.ok(
        epochAfter >= epochBefore,
        `epoch ${epochAfter} after the restart, ${epochBefore} before: it goes on`,
      );
      assert.ok(epochAfter <= epochBefore + downSec + 60, `epoch ${epochAfter}`);
      // Renewal: the same external port, the mapping renewed (not a second one).
      await mapWithNatPmp();
      const pins =
        (JSON.parse(await second.cli(["conns", "--json"])) as { pins?: Array<{ origin: string }> }).pins ??
        [];
      assert.deepEqual(
        pins.map((p) => p.origin).sort(),
        ["natpmp", "natpmp", "upnp"],
        "one pin per mapping: kept, not pinned twice",
      );
      const listed = await upnpc("-l");
      assert.match(listed, /TCP\s+18086->192\.168\.0\.2:8082\s+'kept across'/);
      await second.stop();
    } finally {
      for (const p of services) if (p.running) await p.kill("SIGTERM", 5000);
    }
  });

  it("a tampered snapshot is refused, naming why; masq starts empty and cleans up the setup left behind", async () => {
    const first = await start();
    const ping = await net.lab.exec(net.inside[0].ns, ["ping", "-n", "-c", "2", "-i", "0.2", net.inet.addr]);
    assert.equal(ping.code, 0, ping.stdout);
    const stop = await masqCli(["stop", "--keep-state", "--socket", first.socket]);
    assert.equal(stop.code, 0, stop.stderr);
    const bytes = readFileSync(snapshot);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(snapshot, bytes);

    const second = await start();
    assert.match(log(second), /refused: corrupt: checksum mismatch; masq starts with an empty table/);
    assert.match(log(second), /cleaning up after a previous run/);
    const stats = JSON.parse(await second.cli(["stats", "--json"])) as { engine: { flows: number } };
    assert.equal(stats.engine.flows, 0, "the table is empty");
    assert.ok(!existsSync(snapshot), "the refused snapshot is set aside");
    assert.ok(
      readdirSync(dirname(snapshot)).some((f) => f.startsWith(`${basename(snapshot)}.refused-`)),
      "kept aside for a look",
    );
    assert.equal(await tunPersistent("masq0"), false, "the left TUN was removed and made anew");
    const again = await net.lab.exec(net.inside[0].ns, ["ping", "-n", "-c", "2", "-i", "0.2", net.inet.addr]);
    assert.equal(again.code, 0, "an empty masq translates as ever");
    await second.stop();
  });

  it("masq stop alone undoes the host setup like SIGTERM; with no masq running it says so", async () => {
    const before0 = await gatewaySnapshot(net);
    const m = await start();
    const stop = await masqCli(["stop", "--socket", m.socket]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /^masq \(pid \d+\) stopped\n$/);
    assert.ok(!m.proc.running);
    assert.equal(m.proc.exitCode, 0);
    assert.ok(!existsSync(snapshot), "no snapshot without --keep-state");
    assert.equal(await gatewaySnapshot(net), before0, "the host is as it was");
    const none = await masqCli(["stop", "--socket", m.socket]);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /masq is not running \(no control socket at /);
  });
});

/** Packets in a capture file. */
function packetsIn(path: string): number {
  const r = new PcapReader(readFileSync(path));
  let n = 0;
  while (r.next()) n++;
  return n;
}

function sha256Of(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}
