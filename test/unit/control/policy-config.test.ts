// The firewall, limits and forward keys of the TOML config: parsed into engine data, and every
// error names the key.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { ip } from "../../helpers/packets.ts";

const base = { inside: ["lan0"], outside: "wan0" };
const withFile = (text: string) => resolveRunConfig({ ...base, config: "masq.toml" }, () => text);

function errorOf(text: string): string {
  try {
    withFile(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail("no error");
}

describe("firewall, limits and forwards in the config", () => {
  it("parses ordered rules, limits and forwards", () => {
    const c = withFile(`
[limits]
new_flows_per_sec_per_host = 50
new_flows_per_sec = 5000

[[forward]]
outside = "8080/tcp"
inside = "192.168.0.2:80"

[[forward]]
outside = "198.51.100.2:5000-5010/udp"
inside = "192.168.0.3"
remote = "203.0.113.10"
note = "game"

[[firewall.rule]]
name = "no smtp"
direction = "outbound"
action = "reject"
protocol = "tcp"
destination_ports = 25

[[firewall.rule]]
direction = "inbound"
action = "drop"
protocol = "udp"
source = "203.0.113.0/24"
destination = "192.168.0.3"
source_ports = "1-1023"
`);
    assert.equal(c.limits.newFlowsPerSecPerHost, 50);
    assert.equal(c.limits.newFlowsPerSec, 5000);
    assert.deepEqual(c.firewall, [
      {
        name: "no smtp",
        direction: "outbound",
        action: "reject",
        protocol: "tcp",
        destinationPorts: { first: 25, last: 25 },
      },
      {
        direction: "inbound",
        action: "drop",
        protocol: "udp",
        source: { addr: ip("203.0.113.0"), len: 24 },
        destination: { addr: ip("192.168.0.3"), len: 32 },
        sourcePorts: { first: 1, last: 1023 },
      },
    ]);
    assert.equal(c.forwards.length, 2);
    assert.deepEqual(c.forwards[1], {
      proto: "udp",
      outAddr: ip("198.51.100.2"),
      first: 5000,
      last: 5010,
      inAddr: ip("192.168.0.3"),
      inPort: 5000,
      remote: ip("203.0.113.10"),
      note: "game",
    });
    const d = resolveRunConfig(base);
    assert.deepEqual([d.firewall, d.forwards, d.limits.newFlowsPerSec], [[], [], 0]);
  });

  it("names the key of every problem", () => {
    const rule = (extra: string) => `[[firewall.rule]]\ndirection = "inbound"\naction = "drop"\n${extra}`;
    const cases: Array<[string, RegExp]> = [
      [
        rule('protocol = "sctp"'),
        /masq\.toml: firewall\.rule\.0\.protocol: must be one of tcp, udp, icmp, any/,
      ],
      ['[[firewall.rule]]\naction = "drop"', /firewall\.rule\.0\.direction: missing \(required\)/],
      [rule('verdict = "x"'), /firewall\.rule\.0\.verdict: unknown key/],
      [rule('destination = "10.0.0.0/33"'), /firewall\.rule\.0\.destination: .* is not an IPv4 prefix/],
      [
        rule("destination_ports = 22"),
        /firewall\.rule\.0\.destination_ports: ports need protocol = "tcp" or "udp"/,
      ],
      [
        rule('protocol = "tcp"\nsource_ports = "30-20"'),
        /firewall\.rule\.0\.source_ports: "30-20" is not a port/,
      ],
      [`${rule("")}\n${rule('protocol = "maybe"')}`, /firewall\.rule\.1\.protocol/],
      ["[limits]\nnew_flows_per_sec = -1", /limits\.new_flows_per_sec: /],
      [
        "[limits]\nnew_flows_per_sec_per_host = 1.5",
        /limits\.new_flows_per_sec_per_host: must be a whole number/,
      ],
      [
        '[[forward]]\noutside = "8080"\ninside = "192.168.0.2"',
        /masq\.toml: forward\.0\.outside: "8080" is not like/,
      ],
      ['[[forward]]\noutside = "8080/tcp"', /forward\.0\.inside: missing \(required\)/],
      ['[[forward]]\noutside = "8080/tcp"\ninside = "192.168.0.2:99999"', /forward\.0\.inside: port 99999/],
      [
        '[[forward]]\noutside = "8080/tcp"\ninside = "192.168.0.2"\nremote = "x"',
        /forward\.0\.remote: "x" is not/,
      ],
    ];
    for (const [text, re] of cases) assert.match(errorOf(text), re, text);
  });
});
