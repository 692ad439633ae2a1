// contrib/masq.toml, the example config the systemd unit reads: it must be a config masq accepts,
// with its commented-out keys too, and say truly which keys a reload cannot change.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { RELOAD_KEYS } from "../../../src/control/reload-plan.ts";

const PATH = new URL("../../../contrib/masq.toml", import.meta.url).pathname;
const TEXT = readFileSync(PATH, "utf8");
/** A commented-out key or table ("# port_seed = 12345", "# [[forward]]"), not a comment in prose. */
const COMMENTED = /^# (?=\[|[a-z_]+ = )/;
/** The example with every commented-out key and table in force. */
const UNCOMMENTED = TEXT.split("\n")
  .map((l) => l.replace(COMMENTED, ""))
  .join("\n");

describe("contrib/masq.toml", () => {
  it("is accepted as it is: interface mode on eth1 behind eth0", () => {
    const c = resolveRunConfig({ config: PATH });
    assert.deepEqual([c.inside, c.outside, c.addresses], [["eth1"], "eth0", []]);
    assert.equal(c.controlSocket, "/run/masq/masq.sock", "the unit's RuntimeDirectory");
  });

  it("is accepted with its commented-out keys in force (pool mode, a forward, a rule, metrics)", () => {
    const c = resolveRunConfig({ config: PATH }, () => UNCOMMENTED);
    assert.deepEqual(c.addresses, ["198.51.100.100"]);
    assert.equal(c.forwards.length, 1);
    assert.equal(c.firewall[0].name, "no smtp out");
    assert.equal(c.metrics.listen, "127.0.0.1:9753");
  });

  it("marks exactly the keys a reload refuses with (restart)", () => {
    let table = "";
    const wrong: string[] = [];
    for (const line of UNCOMMENTED.split("\n")) {
      const header = /^\[\[?([a-z_.]+)\]\]?/.exec(line);
      if (header) {
        table = header[1];
        continue;
      }
      const key = /^([a-z_]+) = /.exec(line)?.[1];
      if (key === undefined) continue;
      const full = table === "" ? key : `${table}.${key}`;
      const entry = RELOAD_KEYS.find((k) => full === k.key || full.startsWith(`${k.key}.`));
      assert.ok(entry, `${full} is no setting a reload knows`);
      if (line.includes("(restart)") !== (entry.restart !== undefined)) wrong.push(full);
    }
    assert.deepEqual(wrong, [], "keys whose (restart) mark is wrong");
  });
});
