// End to end: interface mode's public address changes under masq, as at a PPP redial or a DHCP
// lease with another address. The test moves the gateway's WAN address itself (delete the old,
// add the new, fix the ISP router's route, as a DHCP client and the ISP would) while an inside
// host runs a long TCP download and a UDP exchange, then takes the address away and gives it
// back, flaps the link, and finally starts masq on an interface with no address at all.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";
import { waitUntil } from "../../src/lab/wait.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const OLD = "198.51.100.2";
const NEW = "198.51.100.66";
const GW = "192.168.0.1";

// A UDP exchange: one datagram every 100 ms from a fixed port (at most 900, 90 s), each answer
// printed as it comes ("echo n from <address>:<port>", the address the Internet host saw).
const UDP_EXCHANGE = `
const s = require("node:dgram").createSocket("udp4");
const [host, port] = process.argv.slice(1);
let n = 0;
s.on("message", (b) => process.stdout.write(b.toString()));
s.bind(40000, () => {
  const t = setInterval(() => {
    s.send(String(n++), Number(port), host);
    if (n >= 900) { clearInterval(t); s.close(); }
  }, 100);
});
`;

// NAT-PMP/PCP announcements on an inside host: every datagram to port 5350 (224.0.0.1), as hex.
const ANNOUNCEMENTS = `
const s = require("node:dgram").createSocket({ type: "udp4", reuseAddr: true });
s.on("message", (b) => process.stdout.write(b.toString("hex") + "\\n"));
s.bind(5350, () => s.addMembership("224.0.0.1"));
setTimeout(() => process.exit(0), 120000);
`;

// SSDP NOTIFYs on an inside host (as a UPnP control point hears them): each NTS line.
const SSDP_LISTEN = `
const s = require("node:dgram").createSocket({ type: "udp4", reuseAddr: true });
s.on("message", (b) => { const m = /NTS: (\\S+)/.exec(b.toString()); if (m) process.stdout.write(m[1] + "\\n"); });
s.bind(1900, () => { s.addMembership("239.255.255.250", process.argv[1]); process.stdout.write("listening\\n"); });
setTimeout(() => process.exit(0), 120000);
`;

describe("a public address that changes (interface mode)", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let tmp: string;
  let config: string;
  let inet: LabProcess;
  let abox: string;

  const gateIp = (...args: string[]) => net.lab.run(net.gate.ns, ["ip", ...args]);
  const ispIp = (...args: string[]) => net.lab.run(net.isp.ns, ["ip", ...args]);
  const stats = async () => JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
  const counter = async (name: string) => (await stats()).engine.counters[name] ?? 0;

  /** What the Internet host answers a new connection from `ns`: "you came from <addr>:<port>". */
  async function fetchFrom(ns: string, url: string, connectTimeout = 2): Promise<string | null> {
    const r = await net.lab.exec(
      ns,
      ["curl", "-sS", "--connect-timeout", String(connectTimeout), "--max-time", "5", url],
      { timeoutMs: 10_000 },
    );
    return r.code === 0 ? r.stdout : null;
  }

  /** A long download from the Internet host (rate-limited so it lasts), running in A-box. */
  function longDownload(): LabProcess {
    return net.lab.spawn(abox, [
      "curl",
      "-sS",
      "-o",
      "/dev/null",
      "--limit-rate",
      "2M",
      "--max-time",
      "120",
      `http://${net.inet.addr}/bytes/1000000000`,
    ]);
  }

  /** Bytes the download's flow has brought in so far (masq conns), 0 when there is no such flow. */
  async function downloadBytes(): Promise<number> {
    const conns = JSON.parse(await masq.cli(["conns", "--json", "--proto", "tcp"])) as {
      flows: Array<{ remote: { port: number }; bytesIn: number; state: string }>;
    };
    return conns.flows.filter((f) => f.remote.port === 80).reduce((n, f) => Math.max(n, f.bytesIn), 0);
  }

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqwan-"));
    net = await buildMasqNetwork({ prefix: "masqwan", mode: "interface" });
    abox = net.inside[0].ns;
    config = join(tmp, "masq.toml");
    writeFileSync(
      config,
      '[portmap]\nenabled = true\n[upnp]\nenabled = true\n[[forward]]\noutside = "8080/tcp"\ninside = "192.168.0.2:8080"\n',
    );
    inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service")]);
    const web = net.lab.spawn(abox, [...labScript("inet-service"), "--http", "8080", "--udp", "7007"]);
    const upnpWeb = net.lab.spawn(abox, [...labScript("inet-service"), "--http", "8081", "--udp", "7008"]);
    await Promise.all([inet, web, upnpWeb].map((p) => p.waitFor(/"proto":"udp"/, 10_000)));
    masq = await startMasq(net, { config });
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  it("moves to a new address: the download is reset, UDP and new flows use it, natpmpc, UPnP and a forward follow", async (t) => {
    const download = longDownload();
    const exchange = net.lab.spawn(abox, [process.execPath, "-e", UDP_EXCHANGE, net.inet.addr, "7"]);
    const announcements = net.lab.spawn(abox, [process.execPath, "-e", ANNOUNCEMENTS]);
    const ssdp = net.lab.spawn(abox, [process.execPath, "-e", SSDP_LISTEN, net.inside[0].addr]);
    await ssdp.waitFor("listening", 10_000);
    // A UPnP mapping made on the old address (upnpc -i: the lab's address is a reserved one).
    const upnpc = (...args: string[]) => net.lab.exec(abox, ["upnpc", "-i", ...args], { timeoutMs: 30_000 });
    const mapped = await upnpc("-a", net.inside[0].addr, "8081", "18081", "TCP");
    assert.equal(mapped.code, 0, mapped.stdout);
    await waitUntil("the download is under way", async () => (await downloadBytes()) > 200_000, {
      timeoutMs: 30_000,
    });
    await exchange.waitFor(`from ${OLD}:`, 10_000);

    // What a DHCP client does with a new lease (and the ISP with its route).
    await gateIp("addr", "del", `${OLD}/30`, "dev", net.gate.wan);
    const added = Date.now();
    await gateIp("addr", "add", `${NEW}/32`, "peer", net.isp.toGate, "dev", net.gate.wan);
    await gateIp("route", "replace", "default", "via", net.isp.toGate, "dev", net.gate.wan);
    await ispIp("route", "add", `${NEW}/32`, "dev", net.isp.toGateDev);

    await masq.proc.waitFor(`public address changed from ${OLD} to ${NEW}`, 10_000);
    const line = masq.proc.stdout.split("\n").find((l) => l.includes("public address changed from"));
    const logged = JSON.parse(line ?? "{}") as { time?: number; translatingAt?: number; rulesMs?: number };
    if (logged.translatingAt !== undefined)
      t.diagnostic(
        `translating to the new address ${logged.translatingAt - added} ms after \`ip addr add\` was started; its rules replaced in ${logged.rulesMs} ms more`,
      );
    assert.ok(await download.waitExit(30_000), "the old download ended instead of hanging");
    assert.equal(download.exitCode, 56, `curl: ${download.stderr}`);
    assert.match(download.stderr, /reset by peer/i);

    const fresh = await fetchFrom(net.inside[1].ns, `http://${net.inet.addr}/`);
    assert.match(fresh ?? "", new RegExp(`you came from ${NEW.replaceAll(".", "\\.")}:`));
    await exchange.waitFor(`from ${NEW}:`, 10_000);
    await exchange.kill();

    const natpmp = await net.lab.exec(abox, ["natpmpc", "-g", GW], { timeoutMs: 15_000 });
    assert.match(natpmp.stdout, new RegExp(`Public IP address : ${NEW.replaceAll(".", "\\.")}\\n`));
    const forwarded = await fetchFrom(net.inet.ns, `http://${NEW}:8080/`);
    assert.match(forwarded ?? "", /you came from 203\.0\.113\.10:/, "the forward on the new address");

    // NAT-PMP announced the new address with a new epoch (RFC 6886 §3.2.1): 0, opcode 128,
    // result 0, the epoch, the address; PCP announced (version 2, ANNOUNCE response).
    const newHex = Buffer.from(NEW.split(".").map(Number)).toString("hex");
    await waitUntil("two NAT-PMP announcements of the new address", () => {
      const lines = announcements.stdout
        .split("\n")
        .filter((l) => l.startsWith("0080") && l.endsWith(newHex));
      return lines.length >= 2 && lines;
    });
    assert.ok(
      announcements.stdout.split("\n").some((l) => l.startsWith("0280")),
      "a PCP ANNOUNCE",
    );
    await announcements.kill();

    // UPnP: the device is announced again (byebye, then alive), the external address is the new
    // one, and the mapping made on the old address answers on the new.
    await waitUntil("SSDP byebye then alive after the change", () =>
      /ssdp:byebye\n(?:.*\n)*ssdp:alive/.test(ssdp.stdout),
    );
    await ssdp.kill();
    const upnpStatus = await upnpc("-s");
    assert.match(upnpStatus.stdout, new RegExp(`ExternalIPAddress = ${NEW.replaceAll(".", "\\.")}\\n`));
    const viaUpnp = await fetchFrom(net.inet.ns, `http://${NEW}:18081/`);
    assert.match(viaUpnp ?? "", /you came from 203\.0\.113\.10:/, "the UPnP mapping on the new address");

    const c = (await stats()).engine.counters;
    assert.equal(c.public_address_changes, 1);
    assert.ok(c.public_address_resets >= 1, "the download's connection was reset");
    assert.ok(c.public_address_flows_dropped >= 2);
    assert.deepEqual((await stats()).publicAddresses, [NEW]);
    // Exactly the rules naming the address were replaced.
    const rules = await gateIp("rule", "show");
    assert.doesNotMatch(rules, new RegExp(`to ${OLD.replaceAll(".", "\\.")}\\b`));
    assert.match(rules, new RegExp(`to ${NEW.replaceAll(".", "\\.")} iif lan0 ipproto tcp dport 8080`));
  });

  it("without an address, packets to the Internet are dropped and counted, never sent; back by itself", async () => {
    const before = await counter("drop_no_public_address");
    await gateIp("addr", "del", `${NEW}/32`, "peer", net.isp.toGate, "dev", net.gate.wan);
    await masq.proc.waitFor("the outside interface has no address", 10_000);
    const leak = net.lab.spawn(net.isp.ns, [
      "tcpdump",
      "-l",
      "-n",
      "-i",
      net.isp.toGateDev,
      "src net 192.168.0.0/16",
    ]);
    await leak.waitFor(/listening on/, 10_000);
    const r = await udpAsk(net.lab, abox, net.inet.addr, 7, "lost", { timeoutMs: 1500 });
    assert.notEqual(r.code, 0, "no answer without an address");
    assert.equal(await fetchFrom(abox, `http://${net.inet.addr}/`, 1), null);
    await waitUntil("drops counted", async () => (await counter("drop_no_public_address")) > before);
    await leak.kill("SIGINT");
    assert.doesNotMatch(leak.stdout, /IP 192\.168\./, "nothing left untranslated");

    // The same address comes back (a redial with the same lease): masq goes on by itself.
    await gateIp("addr", "add", `${NEW}/32`, "peer", net.isp.toGate, "dev", net.gate.wan);
    await gateIp("route", "replace", "default", "via", net.isp.toGate, "dev", net.gate.wan);
    await masq.proc.waitFor("has its address back", 10_000);
    const back = await waitUntil(
      "translating again",
      async () => (await fetchFrom(abox, `http://${net.inet.addr}/`)) ?? false,
    );
    assert.match(back, new RegExp(`you came from ${NEW.replaceAll(".", "\\.")}:`));
    assert.equal(await counter("public_address_changes"), 1, "the same address: no change");
  });

  it("a link flap that keeps the address flushes nothing: the download goes on", async () => {
    const download = longDownload();
    try {
      await waitUntil("the download is under way", async () => (await downloadBytes()) > 200_000, {
        timeoutMs: 30_000,
      });
      const flowsDropped = await counter("public_address_flows_dropped");
      await gateIp("link", "set", "dev", net.gate.wan, "down");
      await gateIp("link", "set", "dev", net.gate.wan, "up");
      // Link down took the routes through it; the PPP or DHCP client puts them back.
      await gateIp("route", "replace", "default", "via", net.isp.toGate, "dev", net.gate.wan);
      const at = await downloadBytes();
      await waitUntil("the same download carries on", async () => (await downloadBytes()) > at + 500_000, {
        timeoutMs: 30_000,
      });
      assert.ok(download.running, "not reset");
      assert.equal(await counter("public_address_flows_dropped"), flowsDropped);
    } finally {
      await download.kill();
    }
  });

  it("starts on an interface with no address yet, says it waits, and translates once one comes", async () => {
    assert.equal(await masq.stop(), 0);
    // The rules of both addresses were recorded as they were replaced: none is left behind.
    assert.doesNotMatch(await gateIp("rule", "show"), /lookup 10[012]/);
    await gateIp("addr", "del", `${NEW}/32`, "peer", net.isp.toGate, "dev", net.gate.wan);
    masq = await startMasq(net, { config });
    await masq.proc.waitFor("has no IPv4 address yet: waiting", 5000);
    assert.equal(await fetchFrom(abox, `http://${net.inet.addr}/`, 1), null);
    assert.ok((await counter("drop_no_public_address")) > 0);
    await gateIp("addr", "add", `${OLD}/30`, "dev", net.gate.wan);
    await gateIp("route", "replace", "default", "via", net.isp.toGate, "dev", net.gate.wan);
    await masq.proc.waitFor(`public address ${OLD}: translating`, 10_000);
    const first = await waitUntil(
      "translating",
      async () => (await fetchFrom(abox, `http://${net.inet.addr}/`)) ?? false,
    );
    assert.match(first, new RegExp(`you came from ${OLD.replaceAll(".", "\\.")}:`));
    const forwarded = await fetchFrom(net.inet.ns, `http://${OLD}:8080/`);
    assert.match(
      forwarded ?? "",
      /you came from 203\.0\.113\.10:/,
      "the config's forward, once there is an address",
    );
    assert.equal(await masq.stop(), 0);
    assert.doesNotMatch(await gateIp("rule", "show"), /lookup 10[012]/, "nothing left after exit");
  });
});
