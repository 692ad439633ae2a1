import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { MAX_WORKERS, parseWorkers } from "../../../src/control/workers-config.ts";

const base = { inside: ["lan0"], outside: "wan0" };
const withFile = (text: string, flags = {}) =>
  resolveRunConfig({ ...base, config: "masq.toml", ...flags }, () => text);
const refused = (f: () => unknown, want: RegExp) =>
  assert.throws(f, (e: unknown) => e instanceof ConfigError && want.test(e.message), String(want));

describe("workers", () => {
  it("is 1 by default; a count from the file or --workers, the flag winning", () => {
    assert.equal(resolveRunConfig(base).workers, 1);
    assert.equal(withFile("workers = 1\n").workers, 1);
    assert.equal(withFile("workers = 2\n").workers, 2);
    assert.equal(withFile("workers = 2\n", { workers: "3" }).workers, 3);
  });

  it("auto is one per CPU, within the bounds", () => {
    assert.equal(parseWorkers("auto", 2), 2);
    assert.equal(parseWorkers("auto", 1), 1);
    assert.equal(parseWorkers("auto", 500), MAX_WORKERS);
  });

  it("0, a fraction, too many or a word is refused, naming the key", () => {
    for (const text of [
      "workers = 0\n",
      "workers = 1.5\n",
      `workers = ${MAX_WORKERS + 1}\n`,
      'workers = "many"\n',
    ])
      refused(() => withFile(text), /workers/);
    refused(() => withFile("", { workers: "x" }), /--workers.*whole number of workers/);
  });

  it("with several workers, what is not built for them yet is refused by name", () => {
    for (const [text, key] of [
      [
        'addresses = ["198.51.100.100"]\n[cgnat]\nmode = "deterministic"\ninside = "100.64.0.0/24"\n',
        /cgnat\.mode/,
      ],
      ["datapath_cpu = 1\n", /datapath_cpu/],
    ] as const) {
      refused(
        () => withFile(`workers = 2\n${text}`),
        new RegExp(`${key.source}.*not yet with several workers`),
      );
      assert.doesNotThrow(() => withFile(`workers = 1\n${text}`), text);
    }
  });

  it("with several workers, forwards, NAT-PMP/PCP, UPnP, the dashboard, port blocks and the IPv6 firewall run", () => {
    const c = withFile(
      'workers = 2\n[[forward]]\noutside = "8080/tcp"\ninside = "192.168.0.2:80"\n[portmap]\nenabled = true\n[upnp]\nenabled = true\n[web]\nlisten = "127.0.0.1:8080"\n[cgnat]\nport_block = 512\n[ipv6]\nfirewall = true\ninside_networks = ["2001:db8:1::/64"]\n',
    );
    assert.equal(c.workers, 2);
    assert.equal(c.forwards.length, 1);
    assert.equal(c.portmap.enabled, true);
    assert.equal(c.upnp.enabled, true);
    assert.equal(c.web.listen, "127.0.0.1:8080");
    assert.equal(c.cgnat.portBlock, 512);
    assert.equal(c.ipv6.firewall, true);
  });

  it("with several workers, the NAT event log runs (every worker's ring drained here)", () => {
    const c = withFile('workers = 2\n[nat_log]\nsyslog = "udp://127.0.0.1:514"\n');
    assert.equal(c.workers, 2);
    assert.equal(c.natLog.syslog?.text, "udp://127.0.0.1:514");
  });
});
