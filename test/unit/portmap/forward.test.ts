import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { forwardRuleSteps, planHostSetup } from "../../../src/host/plan.ts";
import { DROP, FORWARD } from "../../../src/nat/engine.ts";
import {
  ForwardError,
  ForwardRegistry,
  forwardText,
  parseForward,
  type Steering,
} from "../../../src/portmap/forwards.ts";
import { ip, SYN, tcp, u16, u32, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "../nat/engine-helpers.ts";

const A = "192.168.0.2";
const B = "192.168.0.3";

describe("forward syntax", () => {
  it("parses [address:]port[-port]/proto -> host[:port]", () => {
    assert.deepEqual(parseForward({ outside: "8080/tcp", inside: "192.168.0.2:80" }), {
      proto: "tcp",
      first: 8080,
      last: 8080,
      inAddr: ip(A),
      inPort: 80,
    });
    const r = parseForward({ outside: "198.51.100.2:5000-5009/UDP", inside: A, remote: REMOTE });
    assert.equal(r.proto, "udp");
    assert.equal(r.outAddr, ip(P));
    assert.equal(r.inPort, 5000, "the inside port defaults to the outside one");
    assert.equal(r.last, 5009);
    assert.equal(r.remote, ip(REMOTE));
    assert.deepEqual(forwardText(r), {
      outside: "198.51.100.2:5000-5009/udp",
      inside: "192.168.0.2:5000",
      remote: REMOTE,
    });
  });

  it("names the key and the problem", () => {
    const bad: Array<[string, string, RegExp]> = [
      ["8080", A, /forward\[0\]\.outside: .* is not like/],
      ["8080/sctp", A, /outside/],
      ["0/tcp", A, /port 0 is not 1-65535/],
      ["9000-8000/tcp", A, /runs backwards/],
      ["1000-3000/tcp", A, /at most 1024 ports/],
      ["80/tcp", "192.168.0.300:80", /forward\[0\]\.inside: .* is not an IPv4 address/],
      ["80/tcp", "host:80", /forward\[0\]\.inside/],
      ["65000-65100/tcp", `${A}:65500`, /past port 65535/],
    ];
    for (const [outside, inside, re] of bad)
      assert.throws(() => parseForward({ outside, inside }, "forward[0]"), re, `${outside} ${inside}`);
  });
});

describe("forward registry", () => {
  it("a forward admits inbound to its ports and hairpins; removing it closes them", async () => {
    const e = makeEngine({ filtering: "address-port-dependent" });
    const reg = new ForwardRegistry({ engine: e, publicAddresses: [ip(P)] });
    const f = await reg.add(parseForward({ outside: "8080-8081/tcp", inside: `${A}:80` }), "config");
    assert.equal(f.pinIds.length, 2);
    const r = run(e, tcp({ src: REMOTE, dst: P, sport: 5555, dport: 8081, flags: SYN }));
    assert.equal(r.verdict, FORWARD);
    assert.equal(u32(r.out, 16), ip(A));
    assert.equal(u16(r.out, 22), 81, "the range maps one to one");
    const hp = run(e, tcp({ src: B, dst: P, sport: 40000, dport: 8080, flags: SYN }));
    assert.equal(hp.verdict, FORWARD);
    assert.equal(u32(hp.out, 16), ip(A));
    const views = reg.views();
    assert.equal(views[0].outside, "198.51.100.2:8080-8081");
    assert.equal(views[0].inside, "192.168.0.2:80-81");
    assert.equal(views[0].flows, 2);
    assert.ok(e.pinList().every((p) => p.origin === "forward"));
    await reg.remove("8080-8081/tcp");
    assert.equal(e.pinList().length, 0);
    const late = run(e, tcp({ src: REMOTE, dst: P, sport: 5556, dport: 8080, flags: SYN }));
    assert.equal(late.verdict, DROP);
    await assert.rejects(reg.remove("8080/tcp"), ForwardError);
  });

  it("refuses a port already forwarded, and rolls back all its ports", async () => {
    const e = makeEngine();
    const reg = new ForwardRegistry({ engine: e, publicAddresses: [ip(P)] });
    await reg.add(parseForward({ outside: "5001/udp", inside: `${B}:53` }), "runtime");
    await assert.rejects(
      reg.add(parseForward({ outside: "5000-5002/udp", inside: `${A}:53` }), "runtime"),
      /5001\/udp: .*in use/,
    );
    assert.equal(e.pinList().length, 1, "the first port of the refused range was released");
    await assert.rejects(
      reg.add(parseForward({ outside: "203.0.113.9:80/tcp", inside: A }), "runtime"),
      /not a public address/,
    );
  });

  it("steers each forward's ports in interface mode, exactly, and undoes on failure", async () => {
    const calls: string[] = [];
    let fail = false;
    const steer: Steering = {
      add: async (proto, a, b) => {
        if (fail) throw new Error("ip rule failed");
        calls.push(`add ${proto} ${a}-${b}`);
      },
      remove: async (proto, a, b) => {
        calls.push(`del ${proto} ${a}-${b}`);
      },
    };
    const e = makeEngine({ mode: "interface" });
    const reg = new ForwardRegistry({ engine: e, publicAddresses: [ip(P)], steer });
    await reg.add(parseForward({ outside: "8080/tcp", inside: `${A}:80` }), "runtime");
    await reg.add(parseForward({ outside: "8080/udp", inside: `${A}:80` }), "runtime");
    await reg.add(parseForward({ outside: "62000/tcp", inside: `${A}:22` }), "runtime");
    assert.deepEqual(calls, ["add tcp 8080-8080", "add udp 8080-8080", "add tcp 62000-62000"]);
    fail = true;
    await assert.rejects(reg.add(parseForward({ outside: "9090/tcp", inside: A }), "runtime"), /steer/);
    assert.equal(e.pinList().length, 3, "the refused forward left no pin");
    fail = false;
    await reg.remove("8080/tcp");
    await reg.clear();
    assert.deepEqual(calls.slice(3), ["del tcp 8080-8080", "del tcp 62000-62000", "del udp 8080-8080"]);
    assert.equal(e.pinList().length, 0);
  });

  it("runtime forwards persist in the state file and come back in a new engine; config ones do not", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masqfwd-unit-"));
    try {
      const stateFile = join(dir, "forwards-masq0.json");
      const e1 = makeEngine();
      const r1 = new ForwardRegistry({ engine: e1, publicAddresses: [ip(P)], stateFile });
      await r1.add(parseForward({ outside: "80/tcp", inside: A }), "config");
      await r1.add(parseForward({ outside: "7000/udp", inside: `${B}:7`, note: "echo" }), "runtime");
      await r1.add(parseForward({ outside: "2222/tcp", inside: `${B}:22`, remote: REMOTE }), "runtime");
      await r1.remove(3);
      await r1.add(parseForward({ outside: "2223/tcp", inside: `${B}:22` }), "runtime");
      const saved = JSON.parse(readFileSync(stateFile, "utf8"));
      assert.deepEqual(saved.forwards, [
        { outside: "7000/udp", inside: "192.168.0.3:7", note: "echo" },
        { outside: "2223/tcp", inside: "192.168.0.3:22" },
      ]);
      const e2 = makeEngine();
      const r2 = new ForwardRegistry({ engine: e2, publicAddresses: [ip(P)], stateFile });
      assert.deepEqual(await r2.restore(), []);
      assert.deepEqual(
        r2.views().map((v) => [v.text, v.source, v.note]),
        [
          ["7000/udp 192.168.0.3:7", "runtime", "echo"],
          ["2223/tcp 192.168.0.3:22", "runtime", ""],
        ],
      );
      const r = run(e2, udp({ src: REMOTE, dst: P, sport: 9, dport: 7000 }));
      assert.equal(r.verdict, FORWARD);
      assert.equal(u32(r.out, 16), ip(B));
      await r2.remove("7000/udp");
      await r2.remove("2223/tcp");
      assert.equal(existsSync(stateFile), false, "no runtime forwards: no state file");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("forward policy rules (interface mode)", () => {
  const base = {
    outside: "wan0",
    inside: ["lan0", "lan1"],
    publicAddress: "198.51.100.2",
    ports: { first: 61000, last: 65534 },
  };

  it("TCP outside masq's range: one rule from the outside, one per inside interface for hairpinning", () => {
    const steps = forwardRuleSteps({ ...base, proto: "tcp", first: 8080, last: 8081 });
    assert.deepEqual(
      steps.map((s) => s.apply.join(" ")),
      [
        "ip rule add pref 113 iif wan0 ipproto tcp dport 8080-8081 lookup 101",
        "ip rule add pref 113 iif lan0 to 198.51.100.2/32 ipproto tcp dport 8080-8081 lookup 100",
        "ip rule add pref 113 iif lan1 to 198.51.100.2/32 ipproto tcp dport 8080-8081 lookup 100",
      ],
    );
    assert.deepEqual(steps[0].undo, ["ip", "rule", "del", ...steps[0].apply.slice(3)]);
    assert.equal(new Set(steps.map((s) => s.what)).size, 3, "each step has its own name");
  });

  it("UDP, or TCP inside masq's range: only the hairpin rules (the outside is already steered)", () => {
    for (const s of [
      forwardRuleSteps({ ...base, proto: "udp", first: 5353, last: 5353 }),
      forwardRuleSteps({ ...base, proto: "tcp", first: 62000, last: 62000 }),
    ]) {
      assert.equal(s.length, 2);
      assert.ok(s.every((x) => x.apply.includes("to")));
    }
  });

  it("refuses port 65535 (iproute2 cannot match it)", () => {
    assert.throws(() => forwardRuleSteps({ ...base, proto: "udp", first: 65535, last: 65535 }), /65535/);
  });

  it("masq's own ports on the public address from the inside go to masq (hairpin replies)", () => {
    const plan = planHostSetup({
      mode: "interface",
      tun: "tun0",
      tunOutside: "tun0-out",
      inside: ["lan0"],
      outside: "wan0",
      insideNetworks: ["192.168.0.0/24"],
      publicAddress: "198.51.100.2",
    });
    const rules = plan
      .map((s) => s.apply.join(" "))
      .filter((a) => a.includes(" iif lan0 to 198.51.100.2/32 "));
    assert.deepEqual(rules, [
      "ip rule add pref 114 iif lan0 to 198.51.100.2/32 ipproto tcp dport 61000-65534 lookup 100",
      "ip rule add pref 114 iif lan0 to 198.51.100.2/32 ipproto udp dport 61000-65534 lookup 100",
    ]);
  });
});

describe("forward state file problems", () => {
  it("a corrupt state file is kept aside as .corrupt-<time>, said so, and the next add writes a new file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masqfwd-unit-"));
    try {
      const stateFile = join(dir, "forwards-masq0.json");
      const cases = [
        "{not json",
        JSON.stringify({ version: 2, forwards: [] }),
        JSON.stringify({ version: 1, forwards: [{ outside: 80, inside: A }] }),
        "null",
      ];
      for (const bad of cases) {
        writeFileSync(stateFile, bad);
        const reg = new ForwardRegistry({ engine: makeEngine(), publicAddresses: [ip(P)], stateFile });
        const failed = await reg.restore();
        assert.equal(failed.length, 1, bad);
        assert.equal(failed[0].forward, null);
        const m =
          /kept as (\S+\.corrupt-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z), masq starts without its forwards/.exec(
            failed[0].error,
          );
        assert.ok(m, failed[0].error);
        assert.match(failed[0].error, /forwards-masq0\.json (is not valid JSON|has an unknown format)/);
        assert.equal(readFileSync(m[1], "utf8"), bad, "the corrupt file is kept as it was");
        assert.equal(existsSync(stateFile), false);
        assert.equal(reg.list().length, 0, "no runtime forwards from it");
        await reg.add(parseForward({ outside: "7000/udp", inside: `${B}:7` }), "runtime");
        assert.deepEqual(JSON.parse(readFileSync(stateFile, "utf8")).forwards, [
          { outside: "7000/udp", inside: "192.168.0.3:7" },
        ]);
        assert.equal(readFileSync(m[1], "utf8"), bad, "and the next add leaves it alone");
        rmSync(m[1]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a corrupt state file that cannot be moved aside is never overwritten: runtime adds are refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masqfwd-unit-"));
    try {
      // A name so long that the .corrupt-<time> one is over the file-name limit: the rename fails.
      const stateFile = join(dir, `${"f".repeat(240)}.json`);
      writeFileSync(stateFile, "{not json");
      const reg = new ForwardRegistry({ engine: makeEngine(), publicAddresses: [ip(P)], stateFile });
      const [failed] = await reg.restore();
      assert.match(
        failed.error,
        /could not be kept aside .*forward add is refused until it is fixed or removed/,
      );
      await assert.rejects(
        reg.add(parseForward({ outside: "7000/udp", inside: B }), "runtime"),
        (err: Error) =>
          err instanceof ForwardError && /is corrupt and could not be moved aside/.test(err.message),
      );
      assert.equal(readFileSync(stateFile, "utf8"), "{not json");
      assert.equal(reg.list().length, 0, "nothing was installed for the refused add");
      await reg.add(parseForward({ outside: "80/tcp", inside: A }), "config");
      assert.equal(reg.list().length, 1, "forwards of the config still come up");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an unreadable state file is reported, not fatal", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masqfwd-unit-"));
    try {
      const stateFile = join(dir, "forwards-masq0.json");
      writeFileSync(stateFile, "{not json");
      const reg = new ForwardRegistry({ engine: makeEngine(), publicAddresses: [ip(P)], stateFile });
      const failed = await reg.restore();
      assert.equal(failed.length, 1);
      assert.match(failed[0].error, /forwards-masq0\.json is not valid JSON/);
      writeFileSync(
        stateFile,
        JSON.stringify({ version: 1, forwards: [{ outside: "80/tcp", inside: "10.0.0.1" }] }),
      );
      const again = await reg.restore();
      assert.match(again[0].error, /not on an inside network/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
