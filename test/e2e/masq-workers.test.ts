// End to end: `masq run --workers 2` in the classic masquerade network, both address modes. Two
// worker threads, each on its own queue of both multi-queue TUNs, the queues chosen by the eBPF
// steering: abox and bbox hash to worker 0, cbox to worker 1 (steering-model.ts hostWorker), so
// both workers carry traffic, and each flow's two directions must meet on its worker for any
// reply to arrive. Real programs on both sides: curl (byte-exact bodies), ping, UDP, traceroute.
// `masq reload` and SIGHUP change the firewall on both workers at once, or on neither. Forwards,
// NAT-PMP (natpmpc) and UPnP IGD (upnpc) map ports of one worker's slice to a host of the other:
// the steering's override table sends them to the host's worker.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ConnsReply, StatsReply, WorkerFigures } from "../../src/control/format.ts";
import { hostWorker } from "../../src/datapath/steering-model.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";
import { waitUntil } from "../../src/lab/wait.ts";
import { defaultPortRange } from "../../src/nat/config.ts";
import { portOwner } from "../../src/nat/port-slices.ts";
import { fetchFromEveryBox } from "../helpers/fetch-all.ts";
import { ip } from "../helpers/packets.ts";
import { tearDown } from "../helpers/teardown.ts";

const WORKERS = 2;
/** The dashboard, on the gateway's loopback. */
const WEB_PORT = 8099;
/** Each mode runs with one of the two I/O paths (each worker its own rings with io_uring). */
const IO: Record<MasqMode, "uring" | "syscalls"> = { interface: "uring", pool: "syscalls" };
const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`masq run --workers ${WORKERS}, ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let inet: LabProcess;
    let tmp: string;
    let config: string;
    let services: LabProcess[] = [];
    /** The first port from `from` up of worker `w`'s slice of the mode's range. */
    const portOf = (w: number, from: number) => {
      let p = from;
      while (portOwner(defaultPortRange(mode), true, p, WORKERS) !== w) p++;
      return p;
    };
    const range = defaultPortRange(mode);
    /** The config's forward: a port of worker 0's slice to C-box (worker 1). */
    const forwardPort = portOf(0, Math.max(range.first, 1024) + 500);
    /** The config file's settings of the start (a reload that keeps them changes only what it adds). */
    const base = [
      `workers = ${WORKERS}`,
      `datapath_io = "${IO[mode]}"`,
      "[portmap]",
      "enabled = true",
      "[upnp]",
      "enabled = true",
      "[web]",
      `listen = "127.0.0.1:${WEB_PORT}"`,
      "[[forward]]",
      `outside = "${forwardPort}/tcp"`,
      'inside = "192.168.0.4:8080"',
      "",
    ].join("\n");

    before(async () => {
      net = await buildMasqNetwork({ prefix: "masqwk", mode });
      inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
      await inet.waitFor(/"proto":"udp"/, 10_000);
      // The file names the workers (and `masq reload` re-reads it).
      tmp = mkdtempSync(join(tmpdir(), "masq-wk-"));
      config = join(tmp, "masq.toml");
      writeFileSync(config, base);
      masq = await startMasq(net, { config });
      // Inside services for the mapped ports: A-box (worker 0) and C-box (worker 1), one inside
      // port per mapping (an inside endpoint has one outside port: endpoint-independent mapping).
      const service = (box: { ns: string }, i: number) =>
        net.lab.spawn(box.ns, [
          ...labScript("inet-service"),
          "--http",
          String(8080 + i),
          "--udp",
          String(7007 + i),
        ]);
      services = [service(net.inside[0], 0), ...[0, 1, 2].map((i) => service(net.inside[2], i))];
      await Promise.all(services.map((p) => p.waitFor(/"proto":"udp"/, 30_000)));
    });

    after(async () => {
      for (const p of services) if (p.running) await p.kill("SIGTERM", 5000);
      await tearDown({ masq, net, tmp });
    });

    const stats = async () => JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;

    it("starts two workers, each with its own queue of both TUNs", async () => {
      assert.match(masq.proc.stderr, new RegExp(`${WORKERS} workers on multi-queue TUNs`), masq.proc.stderr);
      // Each worker sets its own thread's scheduling (SCHED_FIFO is not inherited).
      const ready = masq.proc.stdout.split("\n").find((l) => l.includes("masq ready")) ?? "";
      const priorities = (JSON.parse(ready) as { priorities?: string[] }).priorities ?? [];
      assert.equal(priorities.length, WORKERS, ready);
      for (const p of priorities) assert.match(p, /SCHED_FIFO|normal priority/, ready);
      const s = await stats();
      assert.equal(s.workers?.length, WORKERS, JSON.stringify(s.workers));
      for (const tun of ["masq0", "masq0-out"]) {
        const r = await net.lab.exec(net.gate.ns, ["ls", `/sys/class/net/${tun}/queues`]);
        assert.match(r.stdout, /rx-1/, `${tun} has a second queue: ${r.stdout}`);
      }
    });

    it("HTTP from all three inside hosts at once through both workers: 2 MB bodies byte-exact", async () => {
      await fetchFromEveryBox(net, 2_000_000);
    });

    it("the dashboard's snapshot shows the flows and hosts of both workers (each scanned on its worker)", async () => {
      // A-box's download runs while the dashboard ticks; its flow must be seen with the others.
      const inside = new Set(net.inside.map((b) => b.addr));
      let last = "";
      await waitUntil(
        "a snapshot with flows of hosts of both workers",
        async () => {
          const r = await net.lab.exec(net.gate.ns, [
            "curl",
            "-sS",
            "--max-time",
            "5",
            `http://127.0.0.1:${WEB_PORT}/api/snapshot`,
          ]);
          last = `${r.code} ${r.stdout.slice(0, 300)}${r.stderr}`;
          if (r.code !== 0 || !r.stdout.startsWith("{")) return false;
          const snap = JSON.parse(r.stdout) as {
            flows: { inside: { addr: string } }[];
            total: number;
            sample: { hosts: { addr: string; flows: number }[] };
          };
          last = JSON.stringify({ hosts: snap.sample.hosts, flows: snap.flows.map((f) => f.inside.addr) });
          const owners = new Set(
            snap.sample.hosts.filter((h) => inside.has(h.addr)).map((h) => hostWorker(ip(h.addr), WORKERS)),
          );
          return owners.size === WORKERS && snap.flows.length > 0 && snap.total >= snap.flows.length;
        },
        { timeoutMs: 20_000, intervalMs: 500 },
      ).catch((err: Error) => assert.fail(`${err.message}: the last answer: ${last}`));
    });

    it(`every worker's queues move their batches as datapath_io = "${IO[mode]}" says`, async () => {
      const uring = IO[mode] === "uring";
      const ready = masq.proc.stdout.split("\n").find((l) => l.includes("masq ready")) ?? "";
      const io = (JSON.parse(ready) as { datapathIo?: string[] }).datapathIo ?? [];
      assert.deepEqual(io, Array(WORKERS).fill(uring ? "io_uring" : "syscalls"), ready);
      const s = await stats();
      for (const tun of ["masq0", "masq0-out"]) {
        const d = s.devices?.[tun] ?? {};
        // Summed over the workers' queues: every queue on its own ring, or none.
        assert.equal(d.uring, uring ? WORKERS : 0, `${tun}: ${JSON.stringify(d)}`);
        assert.equal(d.uringFailures, 0, `${tun}: ${JSON.stringify(d)}`);
        assert.ok((d.rxPackets ?? 0) > 0, `${tun}: ${JSON.stringify(d)}`);
        if (uring) assert.ok((d.uringEnters ?? 0) > 0, `${tun}: ${JSON.stringify(d)}`);
      }
    });

    it("ping and UDP from every inside host get their answers", async () => {
      for (const box of net.inside) {
        const r = await net.lab.exec(box.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", net.inet.addr], {
          timeoutMs: 20_000,
        });
        assert.equal(r.code, 0, `${box.name}: ${r.stdout}${r.stderr}`);
        const answer = await udpAsk(net.lab, box.ns, net.inet.addr, 7, `hello from ${box.name}`);
        assert.equal(answer.code, 0, `${box.name}: ${answer.stderr}`);
        assert.ok(answer.stdout.includes(net.publicAddr), `${box.name}: ${answer.stdout}`);
      }
    });

    it("traceroute from cbox (worker 1) sees the hops beyond the gateway", async () => {
      const cbox = net.inside[2];
      const r = await net.lab.exec(
        cbox.ns,
        ["traceroute", "-n", "-w", "2", "-q", "1", "-m", "5", net.inet.addr],
        {
          timeoutMs: 30_000,
        },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(net.inet.addr.replaceAll(".", "\\.")), r.stdout);
    });

    it("each host's flows are on the worker its address hashes to, and both workers translated both ways", async () => {
      const s = await stats();
      const figures = s.workers as WorkerFigures[];
      const hosts = new Set(net.inside.map((b) => hostWorker(ip(b.addr), WORKERS)));
      assert.equal(hosts.size, WORKERS, "the lab's hosts cover both workers");
      for (const w of figures) {
        assert.ok(w.translatedOut > 0 && w.translatedIn > 0, JSON.stringify(w));
        assert.ok((w.datapath.packets ?? 0) > 0, JSON.stringify(w));
      }
      assert.equal(
        s.engine.counters.translated_out,
        figures.reduce((n, w) => n + w.translatedOut, 0),
        "the merged counters add the workers' up",
      );
      const conns = JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply;
      const insides = new Set(conns.flows.map((f) => f.inside.addr));
      for (const box of net.inside) assert.ok(insides.has(box.addr), `${box.name} in masq conns`);
      assert.ok(conns.total >= net.inside.length, `total ${conns.total}`);
      const text = await masq.cli(["stats"]);
      assert.match(text, /workers \(each its own queue/);
    });

    /** The Internet host (or an inside one, hairpinned) fetches `port` of the public address; null: no connection. */
    const fetchPublic = async (ns: string, port: number) => {
      const r = await net.lab.exec(
        ns,
        ["curl", "-sS", "--connect-timeout", "2", "--max-time", "5", `http://${net.publicAddr}:${port}/`],
        { timeoutMs: 10_000 },
      );
      return r.code === 0 ? r.stdout : null;
    };
    const cameFromInternet = /you came from 203\.0\.113\.10:/;

    it("the config's forward of a port of worker 0's slice reaches C-box on worker 1, hairpinned too", async () => {
      assert.equal(hostWorker(ip(net.inside[2].addr), WORKERS), 1);
      assert.match((await fetchPublic(net.inet.ns, forwardPort)) ?? "", cameFromInternet);
      assert.match(
        (await fetchPublic(net.inside[0].ns, forwardPort)) ?? "",
        /you came from/,
        "A-box hairpins",
      );
      const list = await masq.cli(["forward", "list"]);
      assert.match(list, new RegExp(`:${forwardPort}\\s+192\\.168\\.0\\.4:8080\\s+\\*\\s+config`), list);
    });

    it("masq forward add and del at runtime, on a port worker 1's host gets from no slice of its own", async () => {
      // Interface mode: beyond the range (policy rules of its own); pool mode: worker 0's slice.
      const port = 8088;
      assert.notEqual(portOwner(range, true, port, WORKERS), 1);
      assert.equal(await fetchPublic(net.inet.ns, port), null, "closed before");
      const out = await masq.cli(["forward", "add", `${port}/tcp`, `${net.inside[2].addr}:8081`]);
      assert.match(out, new RegExp(`forward \\d+ added: ${port}/tcp`));
      assert.match((await fetchPublic(net.inet.ns, port)) ?? "", cameFromInternet);
      await masq.cli(["forward", "del", `${port}/tcp`]);
      assert.equal(await fetchPublic(net.inet.ns, port), null, "closed after");
    });

    it("natpmpc on A-box (worker 0) maps a port of worker 1's slice; the Internet reaches A-box; deleting closes it", async () => {
      const port = portOf(1, range.last - 300);
      const natpmpc = async (...args: string[]) => {
        const r = await net.lab.exec(net.inside[0].ns, ["natpmpc", "-g", "192.168.0.1", ...args], {
          timeoutMs: 15_000,
        });
        assert.equal(r.code, 0, `natpmpc ${args.join(" ")}: ${r.stdout}${r.stderr}`);
        return r.stdout;
      };
      assert.match(
        await natpmpc(),
        new RegExp(`Public IP address : ${net.publicAddr.replaceAll(".", "\\.")}`),
      );
      const out = await natpmpc("-a", String(port), "8080", "tcp", "600");
      assert.match(out, new RegExp(`Mapped public port ${port} protocol TCP to local port 8080`));
      assert.match((await fetchPublic(net.inet.ns, port)) ?? "", cameFromInternet);
      await natpmpc("-a", String(port), "8080", "tcp", "0");
      assert.equal(await fetchPublic(net.inet.ns, port), null, "closed after deletion");
    });

    it("upnpc on C-box (worker 1) maps a UDP and a TCP port of worker 0's slice; listed; -d closes it", async () => {
      const port = portOf(0, Math.max(range.first, 1024) + 900);
      const cbox = net.inside[2];
      const upnpc = async (...args: string[]) => {
        const r = await net.lab.exec(cbox.ns, ["upnpc", "-i", ...args], { timeoutMs: 30_000 });
        return { code: r.code, out: `${r.stdout}${r.stderr}` };
      };
      const a = await upnpc("-e", "web", "-a", cbox.addr, "8082", String(port), "TCP");
      assert.equal(a.code, 0, a.out);
      assert.match(
        a.out,
        new RegExp(`${port} TCP is redirected to internal ${cbox.addr.replaceAll(".", "\\.")}:8082`),
      );
      assert.match((await fetchPublic(net.inet.ns, port)) ?? "", cameFromInternet);
      const u = await upnpc("-a", cbox.addr, "7009", String(port), "UDP");
      assert.equal(u.code, 0, u.out);
      const echo = await udpAsk(net.lab, net.inet.ns, net.publicAddr, port, "knock");
      assert.equal(echo.code, 0, echo.stderr);
      assert.match(echo.stdout, /echo knock from 203\.0\.113\.10:/);
      const l = await upnpc("-l");
      assert.match(
        l.out,
        new RegExp(`TCP\\s+${port}->${cbox.addr.replaceAll(".", "\\.")}:8082\\s+'web'`),
        l.out,
      );
      assert.equal((await upnpc("-d", String(port), "TCP")).code, 0);
      assert.equal((await upnpc("-d", String(port), "UDP")).code, 0);
      assert.equal(await fetchPublic(net.inet.ns, port), null, "closed after -d");
    });

    it("refuses what is not built for several workers yet, by name, and keeps running", async () => {
      await assert.rejects(masq.cli(["stop", "--keep-state"]), /not yet with several workers/);
      const r = await net.lab.exec(net.inside[0].ns, ["ping", "-c", "1", "-W", "2", net.inet.addr], {
        timeoutMs: 10_000,
      });
      assert.equal(r.code, 0, "still translating");
    });

    /** curl's exit code for a page of the Internet host from `box` (7: refused, the rule's reset). */
    const curlFrom = async (box: { ns: string }) =>
      (
        await net.lab.exec(
          box.ns,
          ["curl", "-sS", "-o", "/dev/null", "--max-time", "5", `http://${net.inet.addr}/`],
          {
            timeoutMs: 15_000,
          },
        )
      ).code;
    /** One inside host of each worker (the steering's hash of its address). */
    const boxOfEachWorker = () =>
      Array.from({ length: WORKERS }, (_, w) => {
        const box = net.inside.find((b) => hostWorker(ip(b.addr), WORKERS) === w);
        assert.ok(box, `an inside host on worker ${w}`);
        return box;
      });
    const rejectWeb = [
      "[[firewall.rule]]",
      'name = "no web"',
      'direction = "outbound"',
      'action = "reject"',
      'protocol = "tcp"',
      "destination_ports = 80",
    ].join("\n");

    it("masq reload puts a new firewall rule on every worker: new flows of hosts on both are refused", async () => {
      const boxes = boxOfEachWorker();
      for (const box of boxes) assert.equal(await curlFrom(box), 0, `${box.name} before the reload`);
      writeFileSync(config, `${base}${rejectWeb}\n`);
      assert.equal(await masq.cli(["reload"]), "reloaded: firewall.rule\n");
      for (const box of boxes)
        assert.equal(await curlFrom(box), 7, `${box.name} (worker ${hostWorker(ip(box.addr), WORKERS)})`);
      const s = await stats();
      assert.equal(
        s.firewall?.find((f) => f.name === "no web")?.hits,
        boxes.length,
        "hits added over the workers",
      );
      assert.equal(s.reload?.ok, 1);
    });

    it("an invalid file, or one changing a restart-only key, changes nothing on any worker", async () => {
      writeFileSync(
        config,
        `workers = ${WORKERS}\n[[firewall.rule]]\ndirection = "sideways"\naction = "drop"\n`,
      );
      await assert.rejects(masq.cli(["reload"]), /firewall/);
      writeFileSync(config, `${base}${rejectWeb}\n[limits]\nmax_flows = 5000\n`);
      await assert.rejects(masq.cli(["reload"]), /limits\.max_flows: needs a restart/);
      for (const box of boxOfEachWorker())
        assert.equal(await curlFrom(box), 7, `${box.name}: the rule holds`);
      const s = await stats();
      assert.equal(s.reload?.failed, 1, JSON.stringify(s.reload));
      assert.equal(s.reload?.refused, 1, JSON.stringify(s.reload));
    });

    it("SIGHUP reloads too: the rule gone from the file, both workers let new flows through again", async () => {
      writeFileSync(config, base);
      process.kill(masq.proc.pid, "SIGHUP");
      for (const box of boxOfEachWorker())
        await waitUntil(
          `${box.name} reaches the web again after SIGHUP`,
          async () => (await curlFrom(box)) === 0,
          {
            timeoutMs: 20_000,
          },
        );
      assert.equal((await stats()).reload?.ok, 2);
    });
  });
}
