// End to end (issue 11 part 4): hairpinning in every filtering mode. A hairpinned packet comes
// from an inside host, so the inbound filtering must not apply to it: under address-dependent and
// address-and-port-dependent filtering, coturn's RFC 5780 client found no hairpinning, and two
// hosts behind masq could not reach each other through their public endpoints when only one side
// sent first. coturn's `turnserver` (STUN only, two addresses as RFC 5780 needs) runs on the
// Internet host; `turnutils_natdiscovery -H` on A-box finds hairpinning and `-f` still reports
// the configured filtering towards the Internet, in each filtering mode and in both address
// modes. Then the direct case: A-box opens a UDP mapping towards the Internet host, B-box sends
// to A-box's public endpoint first, A-box receives it and its answer reaches B-box.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { udpAsk } from "../../src/lab/udp-ask.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const FIRST_CONTACT = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "udp-first-contact.py");
/** The STUN server's second address (RFC 5780 OTHER-ADDRESS), on the Internet host. */
const STUN_ALT = "203.0.113.11";
const FILTERINGS = ["endpoint-independent", "address-dependent", "address-port-dependent"] as const;
/** What `turnutils_natdiscovery -f` concludes for each filtering mode. */
const REPORTED = {
  "endpoint-independent": "NAT with Endpoint Independent Filtering!",
  "address-dependent": "NAT with Address Dependent Filtering!",
  "address-port-dependent": "NAT with Address and Port Dependent Filtering!",
};

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`hairpinning in every filtering mode, ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess | undefined;

    before(async () => {
      net = await buildMasqNetwork({ prefix: "masqhairpin", mode });
      await net.lab.addAddr(net.inet.ns, net.inet.dev, `${STUN_ALT}/24`);
      net.lab.spawn(net.inet.ns, [
        "turnserver",
        "-n",
        "--stun-only",
        "--listening-ip",
        net.inet.addr,
        "--listening-ip",
        STUN_ALT,
        "--listening-port",
        "3478",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--simple-log",
        "--log-file",
        "stdout",
        "--pidfile",
        `/run/${net.inet.ns}-turnserver.pid`,
      ]);
      await waitListening(net.lab, net.inet.ns, "udp", 3478);
      await waitListening(net.lab, net.inet.ns, "udp", 3479);
    });

    after(async () => {
      try {
        if (masq?.proc.running) await masq.stop();
      } finally {
        await net?.destroy();
      }
    });

    const restartMasq = async (filtering: string) => {
      if (masq?.proc.running) assert.equal(await masq.stop(), 0, masq.proc.stderr.slice(-2000));
      masq = await startMasq(net, { flags: ["--filtering", filtering] });
      return masq;
    };

    for (const filtering of FILTERINGS) {
      it(`${filtering}: turnutils_natdiscovery -H finds hairpinning, -f still reports ${filtering} filtering`, async () => {
        const m = await restartMasq(filtering);
        const r = await net.lab.exec(
          net.inside[0].ns,
          ["turnutils_natdiscovery", "-H", "-f", net.inet.addr],
          {
            timeoutMs: 60_000,
          },
        );
        const stats = await m.cli(["stats", "--json"]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(
          r.stdout,
          /Received a request \(maybe a successful hairpinning\)/,
          `${r.stdout}\n${stats}`,
        );
        assert.ok(r.stdout.includes(REPORTED[filtering]), `${r.stdout}\n${stats}`);
        const c = (JSON.parse(stats) as { engine: { counters: Record<string, number> } }).engine.counters;
        assert.ok(c.hairpinned >= 1, stats);
      });
    }

    it("address-port-dependent: B-box sends to A-box's public endpoint first, A-box receives it and its answer reaches B-box", async () => {
      const m = await restartMasq("address-port-dependent");
      const [a, b] = net.inside;
      const peer = net.lab.spawn(a.ns, [
        "/usr/bin/python3",
        FIRST_CONTACT,
        "5000",
        net.inet.addr,
        "7000",
        "30",
      ]);
      await peer.waitFor("sent");
      const flow = await waitUntil("A-box's UDP mapping is in the table", async () =>
        (JSON.parse(await m.cli(["conns", "--json", "--host", a.addr])) as ConnsReply).flows.find(
          (f) => f.protocol === "udp" && f.inside.port === 5000,
        ),
      );
      const answer = await udpAsk(net.lab, b.ns, net.publicAddr, flow.outside.port, "hello-from-b", {
        sourcePort: 6000,
      });
      assert.ok(await peer.waitExit(15_000), `A-box's peer did not end: ${peer.stdout}`);
      assert.match(
        peer.stdout,
        new RegExp(`got hello-from-b from ${net.publicAddr.replaceAll(".", "\\.")}:\\d+`),
      );
      assert.equal(answer.code, 0, `B-box got no answer: ${answer.stderr} ${peer.stdout}`);
      assert.equal(answer.stdout.trim(), "answer-from-a");
    });
  });
}
