// A new ALG is its descriptor and its place in the list (src/alg/algs.ts): the config section,
// the defaults and the counters follow from the descriptor. Shown with a test-only ALG that is
// registered only here, never in the shipped list.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as v from "valibot";
import { ALGS } from "../../../src/alg/algs.ts";
import { defaultAlgConfig } from "../../../src/alg/config.ts";
import { AlgRegistry } from "../../../src/alg/registry.ts";
import type { UdpAlg } from "../../../src/alg/types.ts";
import { algSectionSchema, applyAlgSection } from "../../../src/control/alg-config.ts";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { defaultEngineConfig } from "../../../src/nat/config.ts";
import * as C from "../../../src/nat/counters.ts";
import { DROP, FORWARD, NatEngine } from "../../../src/nat/engine.ts";
import { ip, udp } from "../../helpers/packets.ts";
import { TEST_HASH_SEED } from "../nat/engine-helpers.ts";
import { CLIENT, go, SERVER } from "./alg-helpers.ts";

/**
 * A "knock" datagram to its server port asks the server to answer from another port: expect
 * that answer. A datagram starting with "?" is malformed; one starting with "!" asks for a TCP
 * expectation, which its policy does not allow; one starting with "+" expects the next port up.
 */
const knockAlg: UdpAlg<"knock"> = {
  name: "knock",
  transport: "udp",
  defaultPorts: [7001],
  expectation: { transport: "udp", from: "remote", maxPerFlow: 1 },
  counters: ["expectations", "expectations_refused", "malformed", "errors"],
  datagram(ctx, buf, s, e, outbound) {
    if (!outbound || e <= s) return;
    if (buf[s] === 0x3f) ctx.count(C.C_ALG_MALFORMED);
    else if (buf[s] === 0x21) ctx.expect("tcp", ctx.inPort, ctx.remAddr);
    else if (buf[s] === 0x2b) ctx.expect("udp", ctx.inPort + 1, ctx.remAddr);
    else ctx.expect("udp", ctx.inPort, ctx.remAddr);
  },
};
const WITH_KNOCK = [...ALGS, knockAlg] as const;

function knockEngine() {
  const e = new NatEngine(
    defaultEngineConfig({
      inside: [{ addr: ip("192.168.0.0"), len: 24 }],
      outside: [ip("198.51.100.2")],
      maxFlows: 1024,
      filtering: "address-port-dependent",
      hashSeed: TEST_HASH_SEED,
    }),
  );
  const algs = new AlgRegistry(e, defaultAlgConfig(WITH_KNOCK), undefined, WITH_KNOCK);
  e.attachAlg(algs);
  return { e, algs };
}

const knock = (payload: string, sport = 40000) =>
  udp({ src: CLIENT, dst: SERVER, sport, dport: 7001, payload: Buffer.from(payload, "latin1") });

describe("registering an ALG: one descriptor", () => {
  it("its [alg.<name>] table exists, with the descriptor's defaults, checked like the others", () => {
    const defaults = defaultAlgConfig(WITH_KNOCK);
    assert.deepEqual(defaults.knock, { enabled: true, ports: [7001] });
    assert.deepEqual(defaults.ftp, { enabled: true, ports: [21] });
    const schema = algSectionSchema(WITH_KNOCK);
    const parsed = v.parse(schema, { knock: { ports: [7002, 7002] }, tftp: { enabled: false } });
    const c = defaultAlgConfig(WITH_KNOCK);
    assert.equal(applyAlgSection(WITH_KNOCK, c, parsed), null);
    assert.deepEqual(c.knock, { enabled: true, ports: [7002] });
    assert.equal(c.tftp.enabled, false);
    assert.equal(v.safeParse(schema, { knock: { port: 7002 } }).success, false, "unknown keys refused");
    // Two UDP ALGs on one port: the conflict names the later one's key.
    const clash = defaultAlgConfig(WITH_KNOCK);
    assert.deepEqual(applyAlgSection(WITH_KNOCK, clash, v.parse(schema, { knock: { ports: [69] } })), {
      key: "alg.knock.ports",
      problem: "port 69 is already watched by alg.tftp",
    });
    // A TCP ALG on the same number is no conflict: ports are per transport.
    const tcpToo = defaultAlgConfig(WITH_KNOCK);
    assert.equal(applyAlgSection(WITH_KNOCK, tcpToo, v.parse(schema, { knock: { ports: [21] } })), null);
  });

  it("is not shipped: masq's own config refuses [alg.knock]", () => {
    assert.ok(!(ALGS as readonly { name: string }[]).some((a) => a.name === "knock"));
    assert.throws(
      () =>
        resolveRunConfig({ inside: ["lan0"], outside: "wan0", config: "masq.toml" }, () => "[alg.knock]\n"),
      (err: unknown) => err instanceof ConfigError && /alg\.knock: unknown key/.test(err.message),
    );
  });

  it("watches its port, makes expectations under its policy and has counters of its own", () => {
    const { e, algs } = knockEngine();
    const before = e.stats().counters;
    assert.equal(before.alg_knock_expectations, 0);
    assert.equal(before.alg_knock_malformed, 0);
    assert.equal(before.alg_knock_rewrites, undefined, "only the events it lists");
    assert.equal(before.alg_ftp_rewrites, 0, "the shipped ALGs' counters are there too");

    const out = go(e, knock("hello"));
    assert.equal(out.verdict, FORWARD);
    const outPort = (out.out[20] << 8) | out.out[21];
    assert.equal(algs.expectationCount, 1);
    // The server's answer from another port passes address-and-port-dependent filtering.
    const answer = udp({ src: SERVER, dst: "198.51.100.2", sport: 7100, dport: outPort, payload: 4 });
    assert.equal(go(e, answer).verdict, FORWARD);
    // Unrelated ports of the same server are still filtered.
    const stray = udp({ src: SERVER, dst: "198.51.100.2", sport: 7200, dport: outPort, payload: 4 });
    assert.equal(go(e, stray).verdict, DROP);

    go(e, knock("?", 40001));
    go(e, knock("!", 40002)); // a TCP expectation: outside its policy, an ALG error
    go(e, knock("hello", 40002));
    go(e, knock("+", 40002)); // a second one for the same flow: over its maxPerFlow of 1
    const c = e.stats().counters;
    assert.equal(c.alg_knock_expectations, 2);
    assert.equal(c.alg_knock_malformed, 1);
    assert.equal(c.alg_knock_errors, 1);
    assert.equal(c.alg_knock_expectations_refused, 1);
    // The engine's totals count them as well, and no other ALG's do.
    assert.equal(c.alg_expectations, 2);
    assert.equal(c.alg_malformed, 1);
    assert.equal(c.alg_tftp_expectations, 0);
    assert.deepEqual(algs.describe().at(-1), "knock udp/7001");
  });
});
