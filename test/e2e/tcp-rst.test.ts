// End to end: blind resets (issue 16 item 5, RFC 5961 §3). A-box holds an idle TCP connection to
// an echo server on the Internet host; an attacker on the Internet side (scapy on the ISP router)
// sends a reset from the server's address and port to the connection's public address and port.
// Before, any reset closed masq's flow, which then expired 10 s later while both ends still had
// the connection: the next data was dropped. Now a reset with a wrong sequence number is dropped
// and counted, and the connection carries data 20 s later; one with the right number closes it.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const INJECT = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "tcp-rst.py");
const PY = "/usr/bin/python3";
const PORT = 7000;

describe("TCP resets from the Internet side, interface mode", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let client: LabProcess;

  /** Sends a line on the connection and waits for its echo: data both ways. */
  const echo = async (word: string) => {
    client.child.stdin?.write(`${word}\n`);
    await client.waitFor(word, 10_000);
  };

  /** A reset OFFSET past the server's next sequence number, learnt from the echo of `word`. */
  const reset = async (offset: number, word: string) => {
    const rst = net.lab.spawn(net.isp.ns, [
      PY,
      INJECT,
      net.isp.toGateDev,
      net.inet.addr,
      String(PORT),
      String(offset),
    ]);
    await rst.waitFor("ready", 10_000);
    await echo(word);
    await rst.waitFor(/"seq"/, 10_000);
    await rst.waitExit(5000);
    return JSON.parse(rst.stdout.trim().split("\n").at(-1) ?? "{}") as { next: number; seq: number };
  };

  const stats = async () => (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;

  before(async () => {
    net = await buildMasqNetwork({ prefix: "masqrst", mode: "interface" });
    net.lab.spawn(net.inet.ns, ["socat", `TCP-LISTEN:${PORT},reuseaddr,fork`, "EXEC:cat"]);
    masq = await startMasq(net);
    await waitListening(net.lab, net.inet.ns, "tcp", PORT);
    // -d: socat warns when the connection is reset.
    client = net.lab.spawn(net.inside[0].ns, ["socat", "-d", "-", `TCP:${net.inet.addr}:${PORT}`], {
      stdin: true,
    });
    await echo("hello");
  });

  after(async () => {
    try {
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
    }
  });

  it("a reset with a wrong sequence number is dropped: 20 s later the idle connection still carries data both ways", async () => {
    const sent = await reset(2 ** 31, "before");
    assert.notEqual(sent.seq, sent.next);
    // Idle longer than the 10 s a closed flow used to be kept.
    await new Promise((r) => setTimeout(r, 20_000));
    await echo("after");
    assert.ok(client.running, client.stderr);
    const c = await stats();
    assert.equal(c.drop_tcp_rst_out_of_window, 1, JSON.stringify(c));
  });

  it("a reset with the right sequence number closes it", async () => {
    const sent = await reset(0, "last");
    assert.equal(sent.seq, sent.next);
    assert.ok(await client.waitExit(10_000), "the client saw the reset");
    assert.match(client.stderr, /Connection reset by peer/, "socat -d warns of the reset");
    const conns = JSON.parse(await masq.cli(["conns", "--json"])) as ConnsReply;
    const flow = conns.flows.find((f) => f.remote.port === PORT);
    assert.equal(flow?.state, "closed", JSON.stringify(conns.flows));
    assert.ok((flow?.expiresInSec ?? 0) > 200, "kept 4 minutes (RFC 7857 §2.2)");
  });
});
