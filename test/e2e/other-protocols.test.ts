// End to end: address-only NAT for the IP protocols other than TCP, UDP and ICMP. This kernel has
// no GRE, ESP or SCTP stack (nor tunnel devices), so both ends speak them through raw sockets
// (fixtures/rawip-peer.py): an inside host's datagram of each protocol must reach the Internet
// host from the public address and its answer come back; a second inside host to the same
// remote with the same protocol is refused and counted; a datagram larger than the MTU goes
// through the fragment path both ways.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PEER = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "rawip-peer.py");
const PY = "/usr/bin/python3";
const PROTOCOLS: Array<[string, number, string]> = [
  ["ESP", 50, "0000100100000001deadbeefcafe"], // SPI 0x1001, sequence 1, opaque bytes
  ["GRE", 47, "00000800450000140000"], // version 0, no key, carrying IPv4
  ["SCTP", 132, "13881389000000000000000001000010"], // common header + a chunk's start
];

interface Answer {
  answer: { seen_from: string; echo: string; bytes: number } | null;
}

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`other IP protocols (GRE, ESP, SCTP), ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let echo: LabProcess;

    before(async () => {
      net = await buildMasqNetwork({ prefix: "masqproto", mode });
      masq = await startMasq(net);
      echo = net.lab.spawn(net.inet.ns, [PY, PEER, "echo", PROTOCOLS.map((p) => p[1]).join(","), "240"]);
      await echo.waitFor(/ready/, 15_000);
    });

    after(async () => {
      try {
        await echo?.kill();
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
      }
    });

    const ask = async (host: number, proto: number, hex: string, seconds = 3): Promise<Answer> => {
      const r = await net.lab.exec(
        net.inside[host].ns,
        [PY, PEER, "ask", String(proto), net.inet.addr, hex, String(seconds)],
        { timeoutMs: (seconds + 10) * 1000 },
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as Answer;
    };
    const stats = async () => (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;

    for (const [name, proto, hex] of PROTOCOLS)
      it(`${name}: the Internet host sees the public address, and its answer comes back`, async () => {
        const a = await ask(0, proto, hex);
        assert.ok(a.answer, `no answer; echo saw: ${echo.stdout}`);
        assert.equal(a.answer.seen_from, net.publicAddr);
        assert.equal(a.answer.echo, hex, "the payload arrived and came back unchanged");
      });

    it("masq conns lists the flows by protocol, address-only, with the generic timeout", async () => {
      const conns = JSON.parse(await masq.cli(["conns", "--json", "--proto", "esp"])) as {
        flows: Array<{
          protocol: string;
          inside: { addr: string };
          outside: { addr: string };
          expiresInSec: number;
        }>;
      };
      assert.equal(conns.flows.length, 1, JSON.stringify(conns));
      const f = conns.flows[0];
      assert.equal(f.protocol, "esp");
      assert.equal(f.inside.addr, net.inside[0].addr);
      assert.equal(f.outside.addr, net.publicAddr);
      assert.ok(f.expiresInSec > 500 && f.expiresInSec <= 600, String(f.expiresInSec));
      const text = await masq.cli(["conns", "--proto", "gre"]);
      assert.match(text, /gre/);
    });

    it("a second inside host to the same remote with the same protocol is refused and counted", async () => {
      const before0 = await stats();
      const b = await ask(1, 50, "0000200200000001abcd", 2);
      assert.equal(b.answer, null, "the second host must get no answer (its replies would be the first's)");
      const after0 = await stats();
      assert.ok(
        after0.drop_protocol_remote_taken > before0.drop_protocol_remote_taken,
        JSON.stringify(after0),
      );
      // The first host's flow still works.
      const a = await ask(0, 50, "0000100100000002");
      assert.equal(a.answer?.seen_from, net.publicAddr);
    });

    it("a datagram larger than the MTU goes through as fragments both ways", async () => {
      const big = `00001001000000ff${"a5".repeat(3000)}`;
      const before0 = await stats();
      const a = await ask(0, 50, big);
      assert.ok(a.answer, `no answer; echo saw: ${echo.stdout}`);
      assert.equal(a.answer.bytes, big.length / 2);
      assert.equal(a.answer.echo, big);
      const after0 = await stats();
      assert.ok(after0.fragments_translated >= before0.fragments_translated + 4, JSON.stringify(after0));
    });

    it("from the Internet, only the protocol an inside host uses with that remote gets in", async () => {
      const before0 = await stats();
      // ESP from the remote of the first host's ESP flow: translated to that host.
      const r = await net.lab.exec(net.inet.ns, [PY, PEER, "send", "50", net.publicAddr, "0000999900000001"]);
      assert.equal(r.code, 0, r.stderr);
      // IPIP from the same remote: no inside host has such a flow, so it opens nothing (pool mode
      // drops it; in interface mode it is the gateway's own, handed to its stack).
      await net.lab.exec(net.inet.ns, [PY, PEER, "send", "4", net.publicAddr, "45000014"]);
      const deadline = Date.now() + 5000;
      let after0 = await stats();
      const counted = () =>
        mode === "pool"
          ? after0.drop_no_mapping > before0.drop_no_mapping
          : after0.passthrough > before0.passthrough;
      while (!counted() && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        after0 = await stats();
      }
      assert.ok(counted(), JSON.stringify(after0));
      assert.equal(
        after0.translated_in - before0.translated_in,
        1,
        "only the ESP, to the host that talks ESP with it",
      );
    });
  });
}
