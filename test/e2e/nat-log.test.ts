// End to end: NAT event logging (RFC 6888 §4) to real receivers. rsyslogd in the ISP namespace
// (its own config, pid file and work directory; imudp, imtcp and an imuxsock socket) writes what
// it receives to a file, and tshark captures the IPFIX masq sends to the same collector address
// and decodes it as RFC 8158 records. A-box fetches a page through masq; the log must show the
// mapping's creation with A-box's inside and the public address:port the server saw, and its
// deletion once the connection has closed and its short timeout passed; the destination never.
// With two workers, the mappings of hosts on both reach rsyslog, and both end at the stop.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { StatsReply } from "../../src/control/format.ts";
import { hostWorker } from "../../src/datapath/steering-model.ts";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitUntil } from "../../src/lab/wait.ts";
import { ip } from "../helpers/packets.ts";
import { publicPortOfFetch } from "../helpers/public-port.ts";
import { type Rsyslog, startRsyslog } from "../helpers/rsyslog.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const tools = existsSync("/usr/sbin/rsyslogd") && existsSync("/usr/bin/tshark");
const skip = !root ? "needs root (network namespaces)" : !tools ? "needs rsyslog and tshark" : false;

const COLLECTOR = "198.51.100.1";
const SYSLOG_PORT = 5514;
const IPFIX_PORT = 4739;

describe("NAT event log: RFC 5424 syslog to rsyslogd, IPFIX decoded by tshark", { skip }, () => {
  let net: MasqNetwork;
  let tmp: string;
  let tshark: LabProcess;
  let masq: MasqProcess | undefined;
  let syslog: Rsyslog;
  const pcap = () => join(tmp, "ipfix.pcap");

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqnl-"));
    net = await buildMasqNetwork({ prefix: "masqnl", mode: "interface" });
    const inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80"]);
    await inet.waitFor(/"proto":"http"/, 10_000);
    syslog = await startRsyslog(net.lab, net.isp.ns, tmp, COLLECTOR, SYSLOG_PORT, true);
    tshark = net.lab.spawn(net.isp.ns, [
      "/usr/bin/tshark",
      "-i",
      net.isp.toGateDev,
      "-f",
      `udp port ${IPFIX_PORT}`,
      "-w",
      pcap(),
    ]);
    await tshark.waitFor(/Capturing on/, 20_000);
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  /**
   * What rsyslog received from the current masq run only: each run draws new ports, so a port
   * an earlier run used may come again, and its old records must not answer for the new run.
   */
  let runFrom = 0;
  const received = () => syslog.lines();

  /**
   * Runs masq logging to `syslog` (and IPFIX), with short TCP timeouts so a closed flow goes fast;
   * `extra` goes into `[nat_log]`, `top` before every section.
   */
  async function runMasq(syslog: string, extra: string[] = [], top: string[] = []): Promise<void> {
    if (masq?.proc.running) await masq.stop();
    const config = join(tmp, "masq.toml");
    writeFileSync(
      config,
      [
        ...top,
        "[timeouts]",
        "allow_short_timeouts = true",
        "tcp_transitory = 2",
        "tcp_closed = 2",
        "[nat_log]",
        `syslog = "${syslog}"`,
        `ipfix = "udp://${COLLECTOR}:${IPFIX_PORT}"`,
        "template_interval = 2",
        ...extra,
        "",
      ].join("\n"),
    );
    // The file's last element is what follows its last newline (""): the next record lands there.
    runFrom = Math.max(0, received().length - 1);
    masq = await startMasq(net, { config });
  }

  /** A-box fetches a page; the public port the server saw. */
  const fetchFromAbox = () => publicPortOfFetch(net);

  const lines = () => received().slice(runFrom);

  /** The mapping's creation and deletion lines for public port `port`; its inside port. */
  async function mappingLogged(port: number, destination = false): Promise<number> {
    const add = await waitUntil(
      `APMADD for public port ${port} in rsyslog's file`,
      () => lines().find((l) => / APMADD \[napmap /.test(l) && l.includes(`XSPORT="${port}"`)),
      { timeoutMs: 20_000, describe: () => lines().slice(-5).join("\n") },
    );
    assert.match(add, /^1 masq APMADD \[napmap IATYP="IPv4" ISADDR="192\.168\.0\.2" ISPORT="\d+" /);
    assert.match(add, / XSADDR="198\.51\.100\.2" XSPORT="\d+" PROTO="6"[\] ]/);
    // RFC 6888 REQ-12: no destination unless configured.
    if (destination) assert.match(add, / XDADDR="203\.0\.113\.\d+" XDPORT="80"\]/);
    else assert.doesNotMatch(add, /XDADDR|203\.0\.113\./);
    const inPort = Number(/ISPORT="(\d+)"/.exec(add)?.[1]);
    await waitUntil(
      `APMDEL for public port ${port} once the connection closed and timed out`,
      () => lines().find((l) => / APMDEL \[napmap /.test(l) && l.includes(`XSPORT="${port}"`)),
      { timeoutMs: 30_000, describe: () => lines().slice(-5).join("\n") },
    );
    return inPort;
  }

  let viaTcp: { inPort: number; outPort: number };

  it("over TCP (RFC 6587 octet counting): A-box's mapping made and deleted, with inside and outside address:port", async () => {
    await runMasq(`tcp://${COLLECTOR}:${SYSLOG_PORT}`);
    const outPort = await fetchFromAbox();
    const inPort = await mappingLogged(outPort);
    viaTcp = { inPort, outPort };
    const s = JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply;
    assert.equal(s.natLog?.syslog_connects, 1, JSON.stringify(s.natLog));
    assert.equal(s.natLog?.dropped_ring_full, 0);
    assert.ok((s.natLog?.ipfix_records ?? 0) >= 2, JSON.stringify(s.natLog));
  });

  it("over UDP, with sessions and destination on: the connection's own records too, naming the server", async () => {
    await runMasq(`udp://${COLLECTOR}:${SYSLOG_PORT}`, ["sessions = true", "destination = true"]);
    const port = await fetchFromAbox();
    await mappingLogged(port, true);
    for (const id of ["SADD", "SDEL"]) {
      const line = lines().find((l) => l.includes(` ${id} [nsess `) && l.includes(`XSPORT="${port}"`));
      assert.ok(line, `${id} for public port ${port}: ${lines().slice(-6).join("\n")}`);
      assert.match(line, new RegExp(` XDADDR="${net.inet.addr.replaceAll(".", "\\.")}" XDPORT="80"\\]`));
    }
  });

  it("over a Unix datagram socket (a local syslog daemon's)", async () => {
    await runMasq(`unix:${syslog.socket}`);
    await mappingLogged(await fetchFromAbox());
  });

  it("at masq stop, a mapping still open is logged as deleted (the log has an end for every start)", async () => {
    await runMasq(`udp://${COLLECTOR}:${SYSLOG_PORT}`);
    const sport = 40999;
    const sent = await net.lab.exec(net.inside[0].ns, [
      "sh",
      "-c",
      `echo x | socat -u - UDP:${net.inet.addr}:9,sourceport=${sport}`,
    ]);
    assert.equal(sent.code, 0, sent.stderr);
    const add = await waitUntil(
      `APMADD for A-box's UDP port ${sport}`,
      () =>
        lines().find(
          (l) => / APMADD \[napmap /.test(l) && l.includes(`ISPORT="${sport}"`) && l.includes('PROTO="17"'),
        ),
      { timeoutMs: 20_000, describe: () => lines().slice(-5).join("\n") },
    );
    const outPort = /XSPORT="(\d+)"/.exec(add)?.[1];
    assert.ok(outPort, add);
    // The UDP mapping would live for minutes; the stop ends it.
    await masq?.stop();
    await waitUntil(
      `APMDEL for public UDP port ${outPort} after masq stop`,
      () =>
        lines().find(
          (l) => / APMDEL \[napmap /.test(l) && l.includes(`XSPORT="${outPort}"`) && l.includes('PROTO="17"'),
        ),
      { timeoutMs: 20_000, describe: () => lines().slice(-5).join("\n") },
    );
  });

  it("with two workers: both workers' mappings reach rsyslog, and each worker ends its own at the stop", async () => {
    await runMasq(`udp://${COLLECTOR}:${SYSLOG_PORT}`, [], ["workers = 2"]);
    assert.match(masq?.proc.stderr ?? "", /2 workers on multi-queue TUNs/, "two workers run");
    const outPorts: string[] = [];
    for (let w = 0; w < 2; w++) {
      const box = net.inside.find((b) => hostWorker(ip(b.addr), 2) === w);
      assert.ok(box, `an inside host on worker ${w}`);
      const sport = 41000 + w;
      const sent = await net.lab.exec(box.ns, [
        "sh",
        "-c",
        `echo x | socat -u - UDP:${net.inet.addr}:9,sourceport=${sport}`,
      ]);
      assert.equal(sent.code, 0, sent.stderr);
      const add = await waitUntil(
        `APMADD for ${box.name}'s UDP port ${sport} (worker ${w})`,
        () =>
          lines().find(
            (l) =>
              / APMADD \[napmap /.test(l) &&
              l.includes(`ISADDR="${box.addr}" ISPORT="${sport}"`) &&
              l.includes('PROTO="17"'),
          ),
        { timeoutMs: 20_000, describe: () => lines().slice(-5).join("\n") },
      );
      const outPort = /XSPORT="(\d+)"/.exec(add)?.[1];
      assert.ok(outPort, add);
      outPorts.push(outPort);
    }
    const s = JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply;
    assert.ok((s.natLog?.events ?? 0) >= 2, JSON.stringify(s.natLog));
    assert.equal(s.natLog?.dropped_ring_full, 0);
    // The UDP mappings would live for minutes; the stop ends them, each on its own worker.
    await masq?.stop();
    for (const outPort of outPorts)
      await waitUntil(
        `APMDEL for public UDP port ${outPort} after masq stop`,
        () =>
          lines().find(
            (l) =>
              / APMDEL \[napmap /.test(l) && l.includes(`XSPORT="${outPort}"`) && l.includes('PROTO="17"'),
          ),
        { timeoutMs: 20_000, describe: () => lines().slice(-5).join("\n") },
      );
  });

  it("IPFIX: tshark decodes the RFC 8158 records of the first run's mapping (natEvent 8 and 9)", async () => {
    if (masq?.proc.running) await masq.stop();
    await tshark.kill("SIGINT", 10_000);
    const r = await net.lab.exec(
      net.isp.ns,
      [
        "/usr/bin/tshark",
        "-r",
        pcap(),
        "-d",
        `udp.port==${IPFIX_PORT},cflow`,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=;",
        "-e",
        "cflow.nat_event",
        "-e",
        "cflow.protocol",
        "-e",
        "cflow.srcaddr",
        "-e",
        "cflow.srcport",
        "-e",
        "cflow.post_natsource_ipv4_address",
        "-e",
        "cflow.post_naptsource_transport_port",
      ],
      { timeoutMs: 60_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    // One line per packet, each field the list of its records' values: zip them into records.
    const records = r.stdout
      .trim()
      .split("\n")
      .flatMap((line) => {
        const cols = line.split("\t").map((c) => (c === "" ? [] : c.split(";")));
        return cols[0].map((ev, i) => cols.map((c) => c[i]).join(" ") || ev);
      });
    const want = (ev: number) => `${ev} 6 192.168.0.2 ${viaTcp.inPort} 198.51.100.2 ${viaTcp.outPort}`;
    assert.ok(
      records.includes(want(8)),
      `a NAT44 BIB create for A-box's mapping in ${JSON.stringify(records)}`,
    );
    assert.ok(
      records.includes(want(9)),
      `a NAT44 BIB delete for A-box's mapping in ${JSON.stringify(records)}`,
    );
  });
});
