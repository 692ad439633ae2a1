// End to end: UPnP IGD with Debian's real miniupnpc client (`upnpc`) on inside hosts, against
// masq in the gateway. Interface mode presents IGD v1, pool mode IGD v2 (AddAnyPortMapping,
// GetListOfPortMappings). The Internet host reaches an inside service through a mapping until it
// is deleted; a host cannot map another's address (606) nor a port another holds (718); B-box
// reaches A-box's mapped service on the public address (hairpinning); SSDP never answers from
// the outside.
//
// upnpc runs with -i: miniupnpc takes an IGD whose external address is a reserved one (the lab's
// Internet is TEST-NET-2, 198.51.100.0/24) for "not connected" and stops without it.
//
// Both modes map 18080: in interface mode that port is beyond masq's range and gets its own
// steering rules, as NAT-PMP/PCP's requested ports do (issue 11 part 5; one lease table).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";
import { waitUntil } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";

// One datagram to host:port from inside a namespace; prints what comes back, or "timeout".
const SSDP_SEARCH = `
const s = require("node:dgram").createSocket("udp4");
const [host, ms] = process.argv.slice(1);
const m = 'M-SEARCH * HTTP/1.1\\r\\nHOST: 239.255.255.250:1900\\r\\nMAN: "ssdp:discover"\\r\\nMX: 1\\r\\nST: ssdp:all\\r\\n\\r\\n';
s.on("message", (b) => { process.stdout.write(b.toString()); process.exit(0); });
s.send(m, 1900, host);
setTimeout(() => { process.stdout.write("timeout"); process.exit(0); }, Number(ms));
`;

// Listens on an inside host for SSDP NOTIFY (as a control point does) and prints each NTS line.
const SSDP_LISTEN = `
const s = require("node:dgram").createSocket({ type: "udp4", reuseAddr: true });
s.on("message", (b) => { const m = /NTS: (\\S+)/.exec(b.toString()); if (m) process.stdout.write(m[1] + "\\n"); });
s.bind(1900, () => { s.addMembership("239.255.255.250", process.argv[1]); process.stdout.write("listening\\n"); });
`;

for (const [mode, version, tcpPort, udpPort] of [
  ["interface", 1, 18080, 18007],
  ["pool", 2, 18080, 18007],
] as Array<[MasqMode, number, number, number]>) {
  describe(`UPnP IGD v${version} with miniupnpc, ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    const services: LabProcess[] = [];
    let tmp: string;
    let abox: string;
    let bbox: string;
    let aAddr: string;
    let bAddr: string;

    async function upnpc(ns: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
      const r = await net.lab.exec(ns, ["upnpc", "-i", ...args], { timeoutMs: 30_000 });
      return { code: r.code, out: `${r.stdout}${r.stderr}` };
    }

    async function fetchFrom(ns: string, port: number): Promise<string | null> {
      const r = await net.lab.exec(
        ns,
        ["curl", "-sS", "--connect-timeout", "2", "--max-time", "5", `http://${net.publicAddr}:${port}/`],
        { timeoutMs: 10_000 },
      );
      return r.code === 0 ? r.stdout : null;
    }

    async function pins(): Promise<NonNullable<ConnsReply["pins"]>> {
      return (JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply).pins ?? [];
    }

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masqupnp-"));
      net = await buildMasqNetwork({ prefix: "masqupnp", mode });
      abox = net.inside[0].ns;
      bbox = net.inside[1].ns;
      aAddr = net.inside[0].addr;
      bAddr = net.inside[1].addr;
      const config = join(tmp, "masq.toml");
      writeFileSync(config, `[upnp]\nenabled = true\nversion = ${version}\n`);
      masq = await startMasq(net, { config });
      // A-box: HTTP on 8080-8082, UDP echo on 7007-7009. A test's inside endpoint keeps its
      // outside port while a connection lingers (RFC 4787 REQ-1), so each test has its own.
      for (let i = 0; i < 3; i++)
        services.push(
          net.lab.spawn(abox, [
            ...labScript("inet-service"),
            "--http",
            String(8080 + i),
            "--udp",
            String(7007 + i),
          ]),
        );
      await Promise.all(services.map((s) => s.waitFor(/"proto":"udp"/, 10_000)));
    });

    after(async () => {
      try {
        for (const s of services) if (s.running) await s.kill("SIGTERM", 5000);
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
    });

    it("upnpc -s finds the IGD by SSDP and shows the external address", async () => {
      const r = await upnpc(abox, "-s");
      assert.equal(r.code, 0, r.out);
      // upnpc searches for IGD:1 first; a v2 device answers it as v1 (UDA 1.1 §1.3.2), and its
      // description says what it is.
      assert.match(r.out, /st: urn:schemas-upnp-org:device:InternetGatewayDevice:1/);
      const url = /desc: (http:\/\/\S+)/.exec(r.out)?.[1];
      assert.ok(url, r.out);
      const desc = await net.lab.exec(abox, ["curl", "-sS", "--max-time", "5", url], { timeoutMs: 10_000 });
      assert.match(
        desc.stdout,
        new RegExp(`<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:${version}</deviceType>`),
      );
      assert.match(
        desc.stdout,
        new RegExp(`<serviceType>urn:schemas-upnp-org:service:WANIPConnection:${version}</serviceType>`),
      );
      assert.match(r.out, new RegExp(`ExternalIPAddress = ${net.publicAddr.replaceAll(".", "\\.")}\\n`));
      assert.match(r.out, /Status : Connected/);
      assert.match(r.out, /Connection Type : IP_Routed/);
    });

    it(`upnpc -a maps TCP ${tcpPort}; the Internet reaches A-box; listed; B-box hairpins; -d closes it`, async () => {
      assert.equal(await fetchFrom(net.inet.ns, tcpPort), null, "closed before the mapping");
      const a = await upnpc(abox, "-e", "web", "-a", aAddr, "8080", String(tcpPort), "TCP");
      assert.equal(a.code, 0, a.out);
      assert.match(
        a.out,
        new RegExp(
          `external ${net.publicAddr.replaceAll(".", "\\.")}:${tcpPort} TCP is redirected to internal ${aAddr.replaceAll(".", "\\.")}:8080`,
        ),
      );
      assert.match(
        (await fetchFrom(net.inet.ns, tcpPort)) ?? "",
        /you came from 203\.0\.113\.10:/,
        "reached from the Internet",
      );
      // Hairpinning: B-box reaches A-box's mapped service on the public address.
      assert.match(
        (await fetchFrom(bbox, tcpPort)) ?? "",
        /you came from /,
        "B-box reaches it on the public address",
      );

      const l = await upnpc(abox, "-l");
      assert.equal(l.code, 0, l.out);
      assert.match(l.out, new RegExp(`TCP ${tcpPort}->${aAddr.replaceAll(".", "\\.")}:8080\\s+'web'`));
      const p = (await pins()).find((x) => x.outside.port === tcpPort);
      assert.ok(p, "listed by masq conns");
      assert.deepEqual(
        [p.origin, p.protocol, p.inside.addr, p.inside.port, p.note],
        ["upnp", "tcp", aAddr, 8080, "web"],
      );
      assert.match(
        await masq.cli(["forward", "list"]),
        new RegExp(`tcp\\s+${aAddr.replaceAll(".", "\\.")}:8080\\s+\\S+:${tcpPort}\\s+\\*\\s+upnp`),
      );

      const d = await upnpc(abox, "-d", String(tcpPort), "TCP");
      assert.equal(d.code, 0, d.out);
      assert.match(d.out, /UPNP_DeletePortMapping\(\) returned : 0/);
      assert.equal((await pins()).filter((x) => x.origin === "upnp").length, 0);
      assert.equal(await fetchFrom(net.inet.ns, tcpPort), null, "closed after deletion");
    });

    it(`upnpc -a maps UDP ${udpPort}; the Internet host's datagram reaches A-box's echo; -d closes it`, async () => {
      const a = await upnpc(abox, "-a", aAddr, "7007", String(udpPort), "UDP");
      assert.equal(a.code, 0, a.out);
      const r = await udpAsk(net.lab, net.inet.ns, net.publicAddr, udpPort, "ping-through-upnp", {
        timeoutMs: 5000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^echo ping-through-upnp from 203\.0\.113\.10:/);
      const d = await upnpc(abox, "-d", String(udpPort), "UDP");
      assert.equal(d.code, 0, d.out);
      const gone = await udpAsk(net.lab, net.inet.ns, net.publicAddr, udpPort, "after-delete", {
        timeoutMs: 2000,
      });
      assert.notEqual(gone.code, 0, "no answer once deleted");
    });

    it("a host cannot map another host's address (606) nor a port another host holds (718)", async () => {
      const other = await upnpc(abox, "-a", bAddr, "8080", String(tcpPort + 1), "TCP");
      assert.match(other.out, /failed with code 606 \(Action not authorized\)/);
      assert.equal(
        (await pins()).filter((x) => x.inside.addr === bAddr).length,
        0,
        "nothing mapped for B-box",
      );

      const a = await upnpc(abox, "-a", aAddr, "8081", String(tcpPort + 2), "TCP");
      assert.equal(a.code, 0, a.out);
      const b = await upnpc(bbox, "-a", bAddr, "8081", String(tcpPort + 2), "TCP");
      assert.match(b.out, /failed with code 718 \(ConflictInMappingEntry\)/);
      const low = await upnpc(abox, "-a", aAddr, "8081", "80", "TCP");
      assert.match(low.out, /failed with code 606/, "ports below 1024 refused by default");
      await upnpc(abox, "-d", String(tcpPort + 2), "TCP");

      const stats = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      const u = stats.upnp ?? {};
      assert.ok((u.soap_error_606 ?? 0) >= 2, JSON.stringify(u));
      assert.ok((u.soap_error_718 ?? 0) >= 1, JSON.stringify(u));
      assert.ok((u.mappings_created ?? 0) >= 3 && (u.mappings_deleted ?? 0) >= 3, JSON.stringify(u));
      const prom = await masq.cli(["stats", "--prometheus"]);
      assert.match(prom, /masq_upnp_total\{counter="mappings_created"\} \d+/);
      assert.match(prom, /masq_upnp_mappings 0/);
    });

    if (version === 2)
      it("v2: upnpc -n (AddAnyPortMapping) gets another port when the one asked for is held; -L lists", async () => {
        const a = await upnpc(abox, "-n", aAddr, "8081", String(tcpPort + 3), "TCP");
        assert.equal(a.code, 0, a.out);
        assert.match(a.out, new RegExp(`:${tcpPort + 3} TCP is redirected to internal`));
        const b = await upnpc(bbox, "-n", bAddr, "8080", String(tcpPort + 3), "TCP");
        assert.equal(b.code, 0, b.out);
        const got = /:(\d+) TCP is redirected to internal/.exec(b.out)?.[1];
        assert.ok(got && Number(got) !== tcpPort + 3, `B-box got another port (${b.out})`);
        const L = await upnpc(abox, "-L");
        assert.match(L.out, new RegExp(`TCP ${tcpPort + 3}->${aAddr.replaceAll(".", "\\.")}:8081`));
        await upnpc(abox, "-d", String(tcpPort + 3), "TCP");
        await upnpc(bbox, "-d", got, "TCP");
      });

    it("an M-SEARCH from the Internet host to the public address gets no answer", async () => {
      const r = await net.lab.exec(
        net.inet.ns,
        [process.execPath, "-e", SSDP_SEARCH, net.publicAddr, "3000"],
        {
          timeoutMs: 10_000,
        },
      );
      assert.equal(r.stdout, "timeout", "no SSDP answer from outside");
      // The same search from inside is answered (the test above is not vacuous).
      const inside = await net.lab.exec(
        abox,
        [process.execPath, "-e", SSDP_SEARCH, net.gate.lanAddr, "3000"],
        {
          timeoutMs: 10_000,
        },
      );
      assert.match(inside.stdout, /^HTTP\/1\.1 200 OK\r\n/);
    });

    it("masq's exit removes the mappings and says byebye", async () => {
      const a = await upnpc(abox, "-a", aAddr, "8082", String(tcpPort + 4), "TCP");
      assert.equal(a.code, 0, a.out);
      const listener = net.lab.spawn(abox, [process.execPath, "-e", SSDP_LISTEN, aAddr]);
      services.push(listener);
      await listener.waitFor(/listening/, 10_000);
      await masq.stop();
      await listener.waitFor(/ssdp:byebye/, 10_000);
      await waitUntil("masq exits", async () => !masq.proc.running, { timeoutMs: 30_000 });
      assert.match(`${masq.proc.stdout}${masq.proc.stderr}`, /port mapping deleted/);
      assert.equal(await fetchFrom(net.inet.ns, tcpPort + 4), null);
    });
  });
}
