// End to end: the RTSP ALG with a scripted RTSP server on the Internet host that answers SETUP
// and then streams RTP and RTCP by UDP from its own ports to the negotiated client ports, and a
// scripted client inside whose SETUP request is split across two segments inside the Transport
// header (so the gateway must hold the partial line), under address-and-port-dependent filtering.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PEER = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "rtsp-peer.py");
const PY = "/usr/bin/python3";

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`RTSP ALG, ${mode} mode, address-port-dependent filtering`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;

    before(async () => {
      net = await buildMasqNetwork({ prefix: "masqalg", mode });
      masq = await startMasq(net, { flags: ["--filtering", "address-port-dependent"] });
    });

    after(async () => {
      try {
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
      }
    });

    it("SETUP's client_port is rewritten to a pinned outside pair; RTP and RTCP from the server's own ports arrive", async () => {
      const server = net.lab.spawn(net.inet.ns, [PY, PEER, "server", net.inet.addr]);
      try {
        await server.waitFor(/ready/, 15_000);
        const client = await net.lab.exec(net.inside[0].ns, [PY, PEER, "client", net.inet.addr, "5000"], {
          timeoutMs: 40_000,
        });
        assert.equal(client.code, 0, client.stdout + client.stderr + server.stderr);
        await server.waitFor(/sent/, 15_000);
        assert.match(server.stdout, new RegExp(`peer ${net.publicAddr.replace(/\./g, "\\.")}\\n`));
        const t = /transport RTP\/AVP;unicast;client_port=(\d+)-(\d+)/.exec(server.stdout);
        assert.ok(t, server.stdout);
        assert.equal(Number(t[2]), Number(t[1]) + 1, "RTCP on the next port up");
        assert.match(
          client.stdout,
          /reply-transport RTP\/AVP;unicast;client_port=5000-5001;server_port=6970-6971/,
        );
        assert.match(client.stdout, /rtp 20 rtcp 5/);
        const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
        const c = s.engine.counters;
        assert.ok(c.alg_rewrites >= 2, JSON.stringify(c));
        assert.ok(c.alg_lines_held >= 1, "the split Transport line was held");
        assert.equal(c.alg_expectations, 2);
      } finally {
        await server.kill();
      }
    });
  });
}
