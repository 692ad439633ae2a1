// The Prometheus listener's address (`--metrics`, `[metrics] listen`) and the `--portmap` flag.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { isLoopback, parseListen } from "../../../src/control/metrics-http.ts";

const base = { inside: ["lan0"], outside: "wan0" };

describe("metrics listen address", () => {
  it("parses IPv4, bracketed IPv6, localhost and all-addresses forms", () => {
    assert.deepEqual(parseListen("127.0.0.1:9753"), { host: "127.0.0.1", port: 9753 });
    assert.deepEqual(parseListen("[::1]:9753"), { host: "::1", port: 9753 });
    assert.deepEqual(parseListen("localhost:80"), { host: "localhost", port: 80 });
    assert.deepEqual(parseListen(":9753"), { host: "0.0.0.0", port: 9753 });
  });

  it("refuses what is not address:port, naming the text", () => {
    for (const bad of [
      "9753",
      "127.0.0.1",
      "127.0.0.1:0",
      "127.0.0.1:65536",
      "300.1.1.1:80",
      "[1.2.3.4]:80",
      "host:80",
    ])
      assert.throws(() => parseListen(bad), new RegExp(JSON.stringify(bad).replace(/[[\].]/g, "\\$&")), bad);
  });

  it("knows loopback from the rest", () => {
    assert.ok(
      isLoopback("127.0.0.1") && isLoopback("127.1.2.3") && isLoopback("::1") && isLoopback("localhost"),
    );
    assert.ok(!isLoopback("0.0.0.0") && !isLoopback("192.168.0.1") && !isLoopback("::"));
  });

  it("[metrics] listen in the config, --metrics overrides it; a bad one names the key", () => {
    const file = '[metrics]\nlisten = "127.0.0.1:9100"\n';
    const read = () => file;
    assert.equal(resolveRunConfig({ ...base, config: "m.toml" }, read).metrics.listen, "127.0.0.1:9100");
    assert.equal(
      resolveRunConfig({ ...base, config: "m.toml", metrics: "[::1]:9753" }, read).metrics.listen,
      "[::1]:9753",
    );
    assert.equal(resolveRunConfig(base).metrics.listen, undefined, "off by default");
    assert.throws(
      () => resolveRunConfig({ ...base, config: "m.toml" }, () => '[metrics]\nlisten = "9100"\n'),
      (e: unknown) => e instanceof ConfigError && /^m\.toml: metrics\.listen: /.test(e.message),
    );
    assert.throws(
      () => resolveRunConfig({ ...base, metrics: "nowhere" }),
      (e: unknown) => e instanceof ConfigError && /^--metrics: /.test(e.message),
    );
  });

  it("--portmap turns NAT-PMP/PCP on; off by default", () => {
    assert.equal(resolveRunConfig(base).portmap.enabled, false);
    assert.equal(resolveRunConfig({ ...base, portmap: true }).portmap.enabled, true);
  });
});
