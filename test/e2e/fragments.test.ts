// End to end: bogus fragments from the Internet must not make an inside host's out-of-order
// datagram drop (issue 16 item 8: 300 of them filled the 256 fragments shared by everyone). masq
// in interface mode with the default configuration holds outside sources' fragments in a share
// of their own, so A-box's later fragment waits for its first and the datagram arrives whole.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const FRAG = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "fragments.py");

describe("held fragments under attack from the Internet, interface mode", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;

  const counters = async () =>
    (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;

  async function py(ns: string, ...args: string[]): Promise<string> {
    const r = await net.lab.exec(ns, ["python3", FRAG, ...args], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  }

  before(async () => {
    net = await buildMasqNetwork({ prefix: "masqfrag", mode: "interface" });
    masq = await startMasq(net);
  });

  after(async () => {
    try {
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
    }
  });

  it("after 600 bogus later fragments from the Internet, A-box's out-of-order datagram still arrives whole", async () => {
    const inet = net.inet.ns;
    // 300 from the Internet host itself, then 300 from forged Internet sources.
    assert.equal(await py(inet, "bogus", net.publicAddr, "300", net.inet.addr), "300");
    assert.equal(await py(inet, "bogus", net.publicAddr, "300", "forged"), "300");
    const deadline = Date.now() + 10_000;
    // Nothing else goes through masq meanwhile: every packet it counts is one of them.
    while ((await counters()).packets < 600) {
      assert.ok(
        Date.now() < deadline,
        `the bogus fragments reached masq: ${JSON.stringify(await counters())}`,
      );
      await new Promise((r) => setTimeout(r, 200));
    }
    const listener = net.lab.spawn(inet, ["python3", FRAG, "listen", "9000", "10"]);
    await listener.waitFor("listening", 10_000);
    const sha = await py(net.inside[0].ns, "outoforder", net.inside[0].addr, net.inet.addr, "9000");
    assert.ok(await listener.waitExit(15_000), "the listener ends");
    const got = JSON.parse(listener.stdout.split("\n")[1]) as { len?: number; sha?: string; peer?: string };
    assert.deepEqual(got, { len: 2400, sha, peer: net.publicAddr }, "the datagram arrived whole, translated");
    const c = await counters();
    assert.ok(c.fragments_released >= 1, JSON.stringify(c));
    // The outside share (512 KiB) overflowed: the Internet's own fragments made room for each other.
    assert.ok(c.drop_fragment_source_budget > 0, JSON.stringify(c));
    assert.ok(c.drop_fragment_buffer_full > 0, JSON.stringify(c));
  });
});
