// End to end: the PPTP ALG. A scripted PPTP server (PAC) on the Internet host and scripted clients
// (PNS) on two inside hosts (fixtures/pptp-peer.py; this kernel has no PPP or GRE stack, so GRE
// goes by raw socket): both make a call at the same time with the same call id, then send
// enhanced GRE keyed with the server's call id; the server answers each keyed with the call id
// it was told, and each answer must reach the right host with its own call id.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PEER = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "pptp-peer.py");
const PY = "/usr/bin/python3";
const CALL_ID = 7;

interface ClientResult {
  server_call_id: number;
  peer_call_id: number;
  answer: { key: number; seen_from: string; payload: string } | null;
}

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`PPTP ALG, ${mode} mode: two inside hosts, one server, the same call id`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let server: LabProcess;

    before(async () => {
      net = await buildMasqNetwork({ prefix: "masqpptp", mode });
      masq = await startMasq(net);
      server = net.lab.spawn(net.inet.ns, [PY, PEER, "server", net.inet.addr, "120"]);
      await server.waitFor(/ready/, 15_000);
      await waitListening(net.lab, net.inet.ns, "tcp", 1723);
    });

    after(async () => {
      try {
        await server?.kill();
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
      }
    });

    it("each call gets its own outside call id; each host's GRE reaches the server from the public address and its answer comes back to it", async () => {
      const run = (host: number) =>
        net.lab.exec(
          net.inside[host].ns,
          [PY, PEER, "client", net.inet.addr, String(CALL_ID), `hello from ${net.inside[host].name}`, "5"],
          { timeoutMs: 20_000 },
        );
      const results = await Promise.all([run(0), run(1)]);
      const got = results.map((r, i) => {
        assert.equal(r.code, 0, `${net.inside[i].name}: ${r.stdout}${r.stderr} server: ${server.stdout}`);
        return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as ClientResult;
      });
      for (const [i, g] of got.entries()) {
        const name = net.inside[i].name;
        assert.equal(g.peer_call_id, CALL_ID, `${name}: the reply names its own call id`);
        assert.ok(g.answer, `${name} got no GRE answer; server saw: ${server.stdout}`);
        assert.equal(g.answer.key, CALL_ID, `${name}: the answer carries its own call id`);
        assert.equal(g.answer.seen_from, net.publicAddr);
        assert.equal(g.answer.payload, `hello from ${name}`, "each host got its own answer");
      }
      assert.notEqual(got[0].server_call_id, got[1].server_call_id);
      // The server was told two different call ids, from the public address.
      const calls = server.stdout
        .split("\n")
        .filter((l) => l.startsWith('{"call"'))
        .map((l) => (JSON.parse(l) as { call: { from: string; client_call_id: number } }).call);
      assert.equal(calls.length, 2, server.stdout);
      for (const c of calls) assert.equal(c.from, net.publicAddr);
      assert.notEqual(calls[0].client_call_id, calls[1].client_call_id, server.stdout);
      const s = JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply;
      const c = s.engine.counters;
      assert.equal(c.alg_pptp_expectations, 2, JSON.stringify(c));
      assert.ok(c.alg_pptp_rewrites >= 2, JSON.stringify(c));
      assert.equal(c.alg_pptp_malformed, 0);
      const conns = await masq.cli(["conns", "--proto", "gre"]);
      assert.equal((conns.match(/^gre /gm) ?? []).length, 2, conns);
    });
  });
}
