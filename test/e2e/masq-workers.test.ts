// End to end: `masq run --workers 2` in the classic masquerade network, both address modes. Two
// worker threads, each on its own queue of both multi-queue TUNs, the queues chosen by the eBPF
// steering: abox and bbox hash to worker 0, cbox to worker 1 (steering-model.ts hostWorker), so
// both workers carry traffic, and each flow's two directions must meet on its worker for any
// reply to arrive. Real programs on both sides: curl (byte-exact bodies), ping, UDP, traceroute.
// `masq reload` and SIGHUP change the firewall on both workers at once, or on neither.
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
import { fetchFromEveryBox } from "../helpers/fetch-all.ts";
import { ip } from "../helpers/packets.ts";
import { tearDown } from "../helpers/teardown.ts";

const WORKERS = 2;
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
    /** The config file's settings of the start (a reload that keeps them changes only what it adds). */
    const base = `workers = ${WORKERS}\ndatapath_io = "${IO[mode]}"\n`;

    before(async () => {
      net = await buildMasqNetwork({ prefix: "masqwk", mode });
      inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
      await inet.waitFor(/"proto":"udp"/, 10_000);
      // The file names the workers (and `masq reload` re-reads it).
      tmp = mkdtempSync(join(tmpdir(), "masq-wk-"));
      config = join(tmp, "masq.toml");
      writeFileSync(config, base);
      masq = await startMasq(net, { config });
    });

    after(async () => {
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
