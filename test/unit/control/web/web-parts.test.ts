// The dashboard's parts alone: the [web] config keys, the token and cookie helpers, the SSE
// framing, and the sampler's per-host throughput from the flows' byte counters.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../../src/control/config.ts";
import { ConfigError } from "../../../../src/control/config-error.ts";
import { cookieValue, parseTokenFile, secretsEqual } from "../../../../src/control/web/auth.ts";
import { Sampler } from "../../../../src/control/web/sampler.ts";
import { sseFrame } from "../../../../src/control/web/sse.ts";
import { FORWARD } from "../../../../src/nat/engine.ts";
import { udp } from "../../../helpers/packets.ts";
import { makeEngine, P } from "../../nat/engine-helpers.ts";
import { fakeStats } from "./fake-stats.ts";

const base = { inside: ["lan0"], outside: "wan0" };
const withFile = (text: string, flags: object = base) =>
  resolveRunConfig({ ...flags, config: "masq.toml" }, () => text);

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail("no error");
}

describe("[web] configuration", () => {
  it("is off by default; --web and [web] listen turn it on, loopback needs no token", () => {
    assert.equal(resolveRunConfig(base).web.listen, undefined);
    assert.equal(resolveRunConfig(base).web.allowChanges, false);
    assert.equal(resolveRunConfig({ ...base, web: "127.0.0.1:8080" }).web.listen, "127.0.0.1:8080");
    const c = withFile('[web]\nlisten = "[::1]:8080"\nallow_changes = true\n');
    assert.deepEqual(c.web, { listen: "[::1]:8080", allowChanges: true });
  });

  it("beyond loopback requires token_file, naming the key that set the address", () => {
    assert.match(
      configError(() => resolveRunConfig({ ...base, web: "0.0.0.0:8080" })),
      /^--web: .*token_file/,
    );
    assert.match(
      configError(() => withFile('[web]\nlisten = "192.168.0.1:8080"\n')),
      /^masq\.toml: web\.listen: /,
    );
    const c = withFile('[web]\nlisten = "192.168.0.1:8080"\ntoken_file = "/etc/masq/web.token"\n');
    assert.equal(c.web.tokenFile, "/etc/masq/web.token");
  });

  it("refuses a bad address and unknown keys, naming them", () => {
    assert.match(
      configError(() => resolveRunConfig({ ...base, web: "8080" })),
      /^--web: /,
    );
    assert.match(
      configError(() => withFile('[web]\nlisten = "x:1:2"\n')),
      /web\.listen/,
    );
    assert.match(
      configError(() => withFile("[web]\ntoken = 1\n")),
      /web\.token: unknown key/,
    );
    assert.match(
      configError(() => withFile('[web]\nallow_changes = "yes"\n')),
      /web\.allow_changes/,
    );
  });
});

describe("dashboard tokens", () => {
  it("compares secrets of any length in constant time, exactly", () => {
    assert.equal(secretsEqual("abc", "abc"), true);
    assert.equal(secretsEqual("abc", "abd"), false);
    assert.equal(secretsEqual("abc", "abcd"), false);
    assert.equal(secretsEqual("", "a"), false);
  });

  it("reads the token file's first line and refuses a short token", () => {
    assert.equal(parseTokenFile("0123456789abcdefXYZ\nignored\n"), "0123456789abcdefXYZ");
    assert.equal(typeof parseTokenFile("short\n"), "object");
    assert.equal(typeof parseTokenFile(""), "object");
  });

  it("finds a cookie among others", () => {
    assert.equal(cookieValue("a=1; masq_session=abc; b=2", "masq_session"), "abc");
    assert.equal(cookieValue("masq_session2=x", "masq_session"), undefined);
    assert.equal(cookieValue(undefined, "masq_session"), undefined);
  });
});

describe("SSE framing", () => {
  it("is event, one data line per line of the data, and a blank line", () => {
    assert.equal(sseFrame("snapshot", '{"a":1}'), 'event: snapshot\ndata: {"a":1}\n\n');
    assert.equal(sseFrame("x", "one\ntwo\r\nthree"), "event: x\ndata: one\ndata: two\ndata: three\n\n");
    assert.throws(() => sseFrame("a\nb", ""));
  });
});

describe("the dashboard sampler", () => {
  it("gives each inside host its throughput between ticks from its flows' bytes, and counts flows", async () => {
    const engine = makeEngine();
    let now = 10_000;
    const sampler = new Sampler({
      engine,
      stats: () => fakeStats(engine),
      algNames: new Set(),
      allowChanges: false,
      now: () => now,
    });
    const send = (src: string, sport: number, payload: number) => {
      const p = udp({ src, dst: "203.0.113.10", sport, dport: 53, payload });
      assert.equal(engine.process(p, 0, p.length, now), FORWARD);
      return p.length;
    };
    send("192.168.0.2", 40000, 100);
    send("192.168.0.3", 40001, 100);
    const first = await sampler.tick();
    assert.equal(first.total, 2);
    assert.equal(first.flows.length, 2);
    // Nothing to compare with yet: no rate.
    assert.ok(first.sample.hosts.every((h) => h.bpsOut === 0 && h.flows === 1));
    now += 2000;
    let sent = 0;
    for (let i = 0; i < 10; i++) sent += send("192.168.0.2", 40000, 1000);
    sent += send("192.168.0.2", 40002, 1000);
    const second = await sampler.tick();
    const a = second.sample.hosts.find((h) => h.addr === "192.168.0.2");
    const b = second.sample.hosts.find((h) => h.addr === "192.168.0.3");
    assert.deepEqual(a, { addr: "192.168.0.2", flows: 2, bpsOut: Math.round((sent * 8) / 2), bpsIn: 0 });
    assert.deepEqual(b, { addr: "192.168.0.3", flows: 1, bpsOut: 0, bpsIn: 0 });
    assert.equal(second.sample.hosts[0].addr, "192.168.0.2", "the busiest first");
    assert.equal(sampler.history.length, 2);
    assert.deepEqual(
      second.addressChanges.map((c) => c.to),
      [[P]],
    );
  });
});
