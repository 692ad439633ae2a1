// The namespace toolkit and the classic masquerade network, checked with the kernel's own NAT
// (so these tests do not depend on masq), plus masq's host setup applied and undone inside the
// gateway namespace. Needs root; skipped otherwise.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  applyHostSetup,
  cleanLeftovers,
  processStartTime,
  readState,
  type UndoReport,
  undoHostSetup,
} from "../../src/host/apply.ts";
import { assertInterface, interfaceAddress, interfaceMtu } from "../../src/host/checks.ts";
import { planHostSetup, readRpFilterState } from "../../src/host/plan.ts";
import {
  buildMasqNetwork,
  disableKernelNat,
  enableKernelNat,
  type Lab,
  listNamespaces,
  type MasqMode,
  type MasqNetwork,
  withTopology,
} from "../../src/lab/netns.ts";

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : "needs root (network namespaces)";
if (!isRoot) console.log("skipping e2e netns tests: not root");

const PREFIX = "masqt";
const ours = () => listNamespaces(`${PREFIX}-${process.pid}-`);

after(async () => {
  if (isRoot) assert.deepEqual(await ours(), [], "no namespace of this test is left behind");
});

async function ping(net: MasqNetwork, ns: string, addr: string): Promise<boolean> {
  const r = await net.lab.exec(ns, ["ping", "-n", "-c1", "-W1", addr], { timeoutMs: 5000 });
  return r.code === 0;
}

/** Ping with a few retries (the first one may wait for ARP and bridge learning). Bounded: 3 tries. */
async function pingEventually(net: MasqNetwork, ns: string, addr: string): Promise<boolean> {
  for (let i = 0; i < 3; i++) if (await ping(net, ns, addr)) return true;
  return false;
}

/** A tiny HTTP server on inet that answers with the client's address. */
function startWhoAmI(net: MasqNetwork, port: number) {
  const script = `require("node:http").createServer((q, s) => s.end(q.socket.remoteAddress)).listen(${port}, "${net.inet.addr}", () => console.log("ready"))`;
  return net.lab.spawn(net.inet.ns, [process.execPath, "-e", script]);
}

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`classic masquerade network (${mode} mode)`, { skip }, () => {
    it("routes inside, needs NAT to reach the Internet, and cleans up", async () => {
      const net = await buildMasqNetwork({ prefix: PREFIX, mode });
      try {
        const { abox, bbox } = net.ns;
        assert.equal(net.publicAddr, mode === "pool" ? "198.51.100.100" : "198.51.100.2");
        for (const ns of Object.values(net.ns)) assert.ok(ns.startsWith(`${PREFIX}-${process.pid}-`), ns);

        // (1) The LAN works: gateway and a neighbour.
        assert.ok(await pingEventually(net, abox, net.gate.lanAddr), "abox pings the gateway");
        assert.ok(await pingEventually(net, abox, net.inside[1].addr), "abox pings bbox");
        assert.ok(await pingEventually(net, net.gate.ns, net.inet.addr), "the gateway itself reaches inet");

        // (3) Without NAT the Internet host cannot answer (no route back to 192.168.0.0/24).
        assert.equal(await ping(net, abox, net.inet.addr), false, "no answer without NAT");

        // (2) With the kernel's NAT: ping and HTTP work, and inet sees the public address.
        await enableKernelNat(net);
        assert.ok(await pingEventually(net, abox, net.inet.addr), "abox pings inet through the kernel NAT");
        const server = startWhoAmI(net, 8080);
        await server.waitFor("ready");
        for (const box of [abox, bbox]) {
          const r = await net.lab.exec(box, [
            "curl",
            "-sS",
            "--max-time",
            "5",
            `http://${net.inet.addr}:8080/`,
          ]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, net.publicAddr, "inet sees the public address");
        }
        await server.kill();
        assert.equal(server.running, false);

        await disableKernelNat(net);
        // The conntrack entry of the earlier ping would still translate the same echo id; a new
        // ping uses a new id, so it must fail again.
        assert.equal(await ping(net, abox, net.inet.addr), false, "no answer once NAT is removed");
      } finally {
        const report = await net.destroy();
        assert.deepEqual(report.errors, []);
      }
      // (4) Nothing of this network is left.
      const left = await listNamespaces(net.lab.id);
      assert.deepEqual(left, []);
    });
  });
}

describe("Lab", { skip }, () => {
  it("destroy kills spawned processes and removes namespaces even after a failure", async () => {
    let lab: Lab | undefined;
    let pid = 0;
    await assert.rejects(
      withTopology(
        async (l) => {
          lab = l;
          const ns = await l.addNamespace("solo");
          const p = l.spawn(ns, ["sleep", "30"]);
          pid = p.pid;
          assert.ok(pid > 0 && p.running);
          throw new Error("boom");
        },
        { prefix: PREFIX },
      ),
      /boom/,
    );
    assert.ok(lab);
    assert.deepEqual(await listNamespaces(lab.id), []);
    assert.throws(() => process.kill(pid, 0), /ESRCH/, "the spawned sleep is gone");
  });

  it("exec reports exit codes and stderr, and times out", async () => {
    await withTopology(
      async (lab) => {
        const ns = await lab.addNamespace("x");
        const ok = await lab.exec(ns, ["sh", "-c", "echo out; echo err >&2; exit 3"]);
        assert.deepEqual([ok.stdout, ok.stderr, ok.code], ["out\n", "err\n", 3]);
        const slow = await lab.exec(ns, ["sleep", "5"], { timeoutMs: 200 });
        assert.equal(slow.signal, "SIGKILL");
        await assert.rejects(
          lab.run(ns, ["ip", "link", "show", "dev", "nope0"]),
          /ip link show dev nope0.*does not exist/,
        );
      },
      { prefix: PREFIX },
    );
  });
});

describe("host setup inside the gateway namespace", { skip }, () => {
  for (const mode of ["interface", "pool"] as MasqMode[]) {
    it(`${mode} mode: apply installs the recipe, undo restores the namespace exactly`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "masq-host-"));
      const net = await buildMasqNetwork({ prefix: PREFIX, mode });
      const gate = net.gate.ns;
      const where = { netns: gate };
      try {
        await assertInterface("lan0", "inside", where);
        await assert.rejects(
          assertInterface("lan9", "inside", where),
          /inside interface lan9 does not exist/,
        );
        assert.equal(await interfaceAddress("wan0", where), "198.51.100.2");

        const snapshot = async () => ({
          rules: await net.lab.ip(gate, "rule", "show"),
          routes: await net.lab.ip(gate, "-4", "route", "show", "table", "all"),
          neigh: await net.lab.ip(gate, "neigh", "show", "proxy"),
          rp: await net.lab.run(gate, ["sh", "-c", "grep -H . /proc/sys/net/ipv4/conf/*/rp_filter"]),
          links: await net.lab.ip(gate, "-br", "link"),
        });
        await net.lab.sysctl(gate, "net.ipv4.conf.all.rp_filter", 2); // to see it kept and restored
        const before = await snapshot();

        const plan = planHostSetup({
          mode,
          tun: "tun0",
          tunOutside: "tun0-out",
          inside: [net.gate.lan],
          outside: net.gate.wan,
          insideNetworks: [net.insideNet],
          pool: net.pool.map((p) => p.split("/")[0]),
          createTun: true,
          mtu: 9000,
          rpFilter: await readRpFilterState(where),
        });
        const stateFile = join(dir, "tun0.json");
        await applyHostSetup(plan, stateFile, where);
        assert.equal(readState(stateFile)?.steps.length, plan.length);
        assert.ok(readState(stateFile)?.steps.every((s) => s.status === "applied"));
        assert.equal(await interfaceMtu("tun0", where), 9000);
        assert.equal(await interfaceMtu("tun0-out", where), 9000);

        const rules = await net.lab.ip(gate, "rule", "show");
        assert.doesNotMatch(rules, /^0:/m);
        assert.match(rules, /^90:\s+from 192\.168\.0\.0\/24 iif wan0 lookup 102/m);
        assert.match(rules, /^90:\s+from all to 192\.168\.0\.0\/24 iif wan0 lookup 102/m);
        assert.match(rules, /^200:\s+from all lookup local/m);
        assert.match(rules, /^300:\s+from all iif lan0 lookup 100/m);
        assert.match(
          await net.lab.ip(gate, "route", "show", "table", "100"),
          /unreachable default metric 4242424242/,
        );
        assert.match(
          await net.lab.ip(gate, "route", "show", "table", "102"),
          /blackhole default metric 4242424242/,
        );
        if (mode === "pool") {
          assert.match(await net.lab.ip(gate, "route", "show"), /198\.51\.100\.100 dev tun0-out/);
          assert.match(await net.lab.ip(gate, "neigh", "show", "proxy"), /198\.51\.100\.100 dev wan0 proxy/);
        } else {
          assert.match(rules, /^110:\s+from all iif wan0 ipproto tcp dport 61000-65534 lookup 101/m);
        }
        const sysctl = async (key: string) => (await net.lab.run(gate, ["sysctl", "-n", key])).trim();
        assert.equal(await sysctl("net.ipv4.conf.all.rp_filter"), "0");
        // The host's loose all=2 is carried onto its interfaces: still loose there while applied.
        for (const dev of ["lan0", "wan0", "lo", "default"])
          assert.equal(await sysctl(`net.ipv4.conf.${dev}.rp_filter`), "2");
        for (const dev of ["tun0", "tun0-out"])
          assert.equal(await sysctl(`net.ipv4.conf.${dev}.rp_filter`), "0");
        assert.equal(
          (await net.lab.run(gate, ["sysctl", "-n", "net.ipv4.conf.tun0.accept_local"])).trim(),
          "1",
        );
        // Inside hosts still reach the gateway itself ('local' still wins for it).
        assert.ok(await pingEventually(net, net.ns.abox, net.gate.lanAddr));

        // Another live masq owns this record: a second start must refuse to touch it.
        const other = net.lab.spawn(gate, ["bash", "-c", "exec -a masq sleep 30"]);
        // Bounded wait (5 s) for bash to exec the "masq" it stands for.
        for (
          let i = 0;
          i < 250 && !readFileSync(`/proc/${other.pid}/cmdline`, "utf8").startsWith("masq\0");
          i++
        )
          await new Promise((r) => setTimeout(r, 20));
        const mine = readState(stateFile)!;
        writeFileSync(
          stateFile,
          JSON.stringify({ ...mine, pid: other.pid, pidStart: processStartTime(other.pid) }),
        );
        await assert.rejects(cleanLeftovers(stateFile, where), /another masq \(pid \d+\) is running/);
        await assert.rejects(applyHostSetup(plan, stateFile, where), /already exists/);
        await other.kill();

        let report: UndoReport;
        if (mode === "interface") {
          writeFileSync(stateFile, JSON.stringify(mine));
          report = await undoHostSetup(stateFile, where);
        } else {
          // Simulate a crash: the recorded process is gone, so the next start cleans up.
          report = (await cleanLeftovers(stateFile, where))!;
          assert.ok(report);
        }
        assert.deepEqual(report.failed, []);
        assert.equal(readState(stateFile), undefined);
        assert.deepEqual(await snapshot(), before);
      } finally {
        await net.destroy();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it("a failing step rolls back what was applied and names the step", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masq-host-"));
    const net = await buildMasqNetwork({ prefix: PREFIX, mode: "interface" });
    const gate = net.gate.ns;
    try {
      const before = await net.lab.ip(gate, "rule", "show");
      // Break the plan part-way: the outside table's default route already exists (and is
      // not ours, so the rollback must leave it, and the TUNs that were already up, alone).
      for (const tun of ["tun0", "tun0-out"]) {
        await net.lab.ip(gate, "tuntap", "add", "dev", tun, "mode", "tun");
        await net.lab.ip(gate, "link", "set", tun, "up");
      }
      await net.lab.ip(gate, "route", "add", "default", "dev", "tun0-out", "table", "101");
      const plan = planHostSetup({
        mode: "interface",
        tun: "tun0",
        tunOutside: "tun0-out",
        inside: ["lan0"],
        outside: "wan0",
        insideNetworks: ["192.168.0.0/24"],
      });
      const stateFile = join(dir, "tun0.json");
      await assert.rejects(
        applyHostSetup(plan, stateFile, { netns: gate }),
        /failed at step "default route via tun0-out in table 101"/,
      );
      assert.equal(readState(stateFile), undefined);
      assert.equal(await net.lab.ip(gate, "rule", "show"), before);
      assert.equal(await net.lab.ip(gate, "route", "show", "table", "100"), "");
      // The pre-existing route was not ours: still there.
      assert.match(await net.lab.ip(gate, "route", "show", "table", "101"), /default dev tun0-out/);
    } finally {
      await net.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
