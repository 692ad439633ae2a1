// End to end: RFC 5382 REQ-4 (issue 17 item 5). An unsolicited SYN from the Internet to a port of
// masq's that nothing maps gets ICMP port unreachable from the public address, no sooner than 6 s
// later, when `unsolicited_syn = "port-unreachable"`; by default it gets nothing (a gateway does
// not answer scans). scapy on the Internet host sends the SYN and waits for the answer.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { StatsReply } from "../../src/control/format.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqNetwork } from "../../src/lab/netns.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const PROBE = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "unsolicited-syn.py");
const PY = "/usr/bin/python3";
/** A port of masq's range (61000-65534) that no mapping holds. */
const UNMAPPED = 62000;

interface Answer {
  type: number;
  code: number;
  from: string;
  sport: number | null;
  dport: number | null;
  delay: number;
}

describe("unsolicited SYNs, interface mode", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess | undefined;
  let tmp: string;

  const start = async (lines: string[]) => {
    if (masq?.proc.running) await masq.stop();
    const config = join(tmp, "masq.toml");
    writeFileSync(config, [`state_dir = "${join(tmp, "state")}"`, ...lines, ""].join("\n"));
    masq = await startMasq(net, { config });
  };

  /** One SYN from the Internet host; the ICMP answer it got within `timeoutSec`, or null. */
  const probe = async (sport: number, timeoutSec: number) => {
    const out = await net.lab.run(
      net.inet.ns,
      [PY, PROBE, net.publicAddr, String(UNMAPPED), String(sport), String(timeoutSec)],
      {
        timeoutMs: (timeoutSec + 10) * 1000,
      },
    );
    return (JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { answer: Answer | null }).answer;
  };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqsyn4-e2e-"));
    net = await buildMasqNetwork({ prefix: "masqreq4", mode: "interface" });
  });

  after(async () => {
    await tearDown({ masq, net, tmp });
  });

  it('unsolicited_syn = "port-unreachable": ICMP type 3 code 3 from the public address, not before 6 s', async () => {
    await start(['unsolicited_syn = "port-unreachable"']);
    const answer = await probe(40_001, 15);
    assert.ok(answer, "an answer came");
    assert.deepEqual([answer.type, answer.code], [3, 3]);
    assert.equal(answer.from, net.publicAddr);
    assert.deepEqual([answer.sport, answer.dport], [40_001, UNMAPPED], "it quotes the SYN");
    assert.ok(answer.delay >= 6, `RFC 5382 REQ-4: at least 6 s (${answer.delay.toFixed(2)} s)`);
    const c = (JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply).engine.counters;
    assert.equal(c.unsolicited_syn_replies, 1, JSON.stringify(c));
  });

  it("by default the SYN gets no answer at all", async () => {
    await start([]);
    assert.equal(await probe(40_002, 9), null);
    const c = (JSON.parse(await masq!.cli(["stats", "--json"])) as StatsReply).engine.counters;
    assert.equal(c.drop_no_mapping, 1, JSON.stringify(c));
  });
});
