import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { describe, it } from "node:test";
import { applyNatLogSection } from "../../../src/control/nat-log-config.ts";
import { EV_MAPPING_CREATED, NatEventRing } from "../../../src/nat/nat-events.ts";
import { defaultNatLogConfig } from "../../../src/natlog/config.ts";
import { NatLogExporter } from "../../../src/natlog/exporter.ts";
import {
  newCounters,
  parseLogTarget,
  type Sender,
  TcpSender,
  UdpSender,
} from "../../../src/natlog/sender.ts";
import { ip } from "../../helpers/packets.ts";

class FakeSender implements Sender {
  readonly target = "fake";
  readonly counters = newCounters();
  readonly sent: Buffer[] = [];
  send(msg: Buffer): void {
    this.sent.push(msg);
    this.counters.sent++;
  }
  close(): void {}
}

const HEADER = { hostname: "gw", appName: "masq", procId: "1", facility: 16, destination: false };

function pushMappings(ring: NatEventRing, n: number, t0 = 0): void {
  for (let i = 0; i < n; i++)
    ring.push(
      EV_MAPPING_CREATED,
      17,
      t0 + i,
      ip("192.168.0.2"),
      40000 + i,
      ip("198.51.100.7"),
      61000 + i,
      0,
      0,
    );
}

async function waitFor(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("the NAT log exporter", () => {
  it("drains the ring into one syslog message per event, with the engine's clock as wall time", () => {
    const ring = NatEventRing.create(64);
    const syslog = new FakeSender();
    const x = new NatLogExporter({
      rings: () => [ring],
      syslog: { sender: syslog, framing: "datagram", header: HEADER },
      destination: false,
      toWallMs: (ms) => Date.UTC(2026, 11, 2) + ms,
    });
    pushMappings(ring, 3, 1000);
    assert.equal(x.drain(), 3);
    assert.equal(syslog.sent.length, 3);
    assert.match(
      syslog.sent[0].toString(),
      /^<134>1 2026-12-02T00:00:01\.000Z gw masq 1 APMADD .* ISPORT="40000"/,
    );
    assert.equal(ring.pending, 0);
    assert.deepEqual(x.counters(), {
      events: 3,
      dropped_ring_full: 0,
      syslog_sent: 3,
      syslog_dropped_queue_full: 0,
      syslog_dropped_send_error: 0,
      syslog_connects: 0,
    });
  });

  it("counts the events a full ring lost, and drains at most its budget per ring per tick", () => {
    const ring = NatEventRing.create(16);
    const syslog = new FakeSender();
    const x = new NatLogExporter({
      rings: () => [ring],
      syslog: { sender: syslog, framing: "datagram", header: HEADER },
      destination: false,
      toWallMs: (ms) => ms,
      budget: 10,
    });
    pushMappings(ring, 20);
    assert.equal(x.drain(), 10);
    assert.equal(x.drain(), 6);
    assert.equal(x.counters().dropped_ring_full, 4);
  });

  it("sends the IPFIX templates at start and again after the template interval (RFC 7011 §8.4)", () => {
    const ring = NatEventRing.create(64);
    const ipfix = new FakeSender();
    let now = 1_000_000;
    const x = new NatLogExporter({
      rings: () => [ring],
      ipfix: { sender: ipfix, domainId: 1, templateIntervalSec: 10 },
      destination: false,
      toWallMs: (ms) => ms,
      now: () => now,
    });
    x.drain();
    assert.equal(ipfix.sent.length, 1, "templates alone at start");
    assert.equal(ipfix.sent[0].readUInt16BE(16), 2);
    pushMappings(ring, 2);
    now += 5000;
    x.drain();
    assert.equal(ipfix.sent.length, 2);
    assert.equal(ipfix.sent[1].readUInt16BE(16), 256, "data only within the interval");
    now += 5000;
    x.drain();
    assert.equal(ipfix.sent.length, 3);
    assert.equal(ipfix.sent[2].readUInt16BE(16), 2, "templates again");
    assert.equal(x.stats().ipfix?.records, 2);
    assert.equal(x.stats().ipfix?.templates_sent, 2);
  });
});

describe("the NAT log's senders", () => {
  it("UDP: each message is one datagram to the collector", async () => {
    const rx = createSocket("udp4");
    rx.bind(0, "127.0.0.1");
    await once(rx, "listening");
    const got: string[] = [];
    rx.on("message", (m) => got.push(m.toString()));
    const s = new UdpSender("udp://test", "127.0.0.1", rx.address().port);
    s.send(Buffer.from("one"));
    s.send(Buffer.from("two"));
    await waitFor("two datagrams", () => got.length === 2);
    assert.deepEqual(got.sort(), ["one", "two"]);
    assert.equal(s.counters.sent, 2);
    s.close();
    rx.close();
  });

  it("TCP: queues while connecting, sends in order once connected, and bounds its queue", async () => {
    let data = "";
    const server: Server = createServer((c) => c.on("data", (d) => (data += d.toString())));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as { port: number }).port;
    const s = new TcpSender("tcp://test", "127.0.0.1", port);
    s.send(Buffer.from("5 first"));
    s.send(Buffer.from("6 second"));
    await waitFor("both frames", () => data === "5 first6 second");
    assert.equal(s.counters.connects, 1);
    s.close();
    server.close();

    // Nobody listens: what is queued beyond 1 MiB is dropped and counted, never buffered.
    const down = new TcpSender("tcp://down", "127.0.0.1", port);
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < 5; i++) down.send(big);
    assert.equal(down.counters.dropped_queue_full, 2);
    down.close();
  });

  it("parses the three target shapes and names the problem with a bad one", () => {
    assert.deepEqual(parseLogTarget("udp://192.0.2.1:514"), { kind: "udp", host: "192.0.2.1", port: 514 });
    assert.deepEqual(parseLogTarget("tcp://collector.example:6514"), {
      kind: "tcp",
      host: "collector.example",
      port: 6514,
    });
    assert.deepEqual(parseLogTarget("unix:/dev/log"), { kind: "unix", path: "/dev/log" });
    assert.match(String(parseLogTarget("udp://192.0.2.1:70000")), /port 1-65535/);
    assert.match(String(parseLogTarget("tcp://192.0.2.1:4739", false)), /must be "udp:\/\/HOST:PORT"/);
    assert.match(String(parseLogTarget("syslog.example:514")), /must be/);
  });

  it("[nat_log]: an IPFIX target other than UDP is refused naming nat_log.ipfix", () => {
    const c = defaultNatLogConfig();
    assert.deepEqual(applyNatLogSection(c, { syslog: "udp://192.0.2.1:514", sessions: true }), undefined);
    assert.equal(c.syslog?.target.kind, "udp");
    assert.equal(c.sessions, true);
    assert.equal(c.destination, false, "RFC 6888 REQ-12: no destination by default");
    assert.equal(applyNatLogSection(c, { ipfix: "tcp://192.0.2.1:4739" })?.key, "nat_log.ipfix");
  });
});
