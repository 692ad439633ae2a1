// `masq run` refuses clearly, before touching the host, when it cannot work: not root, an
// interface missing, a port range overlapping the kernel's ephemeral ports, a bad config key,
// config addresses that contradict the host's (inside networks on the outside subnet, forwards
// to the gateway itself or a broadcast address);
// and it leaves alone what it cannot be sure is its own. `masq run --dry-run` only prints the plan.
// Each case runs in a namespace of its own, so nothing of the machine's is at stake.
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { MASQ_BIN } from "../../src/lab/masq-process.ts";
import { Lab } from "../../src/lab/netns.ts";

const CHECKOUT = dirname(dirname(MASQ_BIN));

const root = process.getuid?.() === 0;

describe("masq run refuses clearly", { skip: root ? false : "needs root (network namespaces)" }, () => {
  let lab: Lab;
  let ns: string;
  let tmp: string;
  let before0 = "";

  const snapshot = async () =>
    (
      await Promise.all([
        lab.run(ns, ["ip", "rule", "show"]),
        lab.run(ns, ["ip", "-4", "route", "show", "table", "all"]),
        lab.run(ns, ["ip", "-o", "link", "show"]),
      ])
    ).join("\n---\n");

  const masqRun = (args: string[]) =>
    lab.exec(ns, [process.execPath, MASQ_BIN, "run", "--socket", join(tmp, "masq.sock"), ...args], {
      timeoutMs: 20_000,
    });

  /**
   * Runs masq as nobody. The checkout may sit under a folder only root can enter (CI clones into
   * `mktemp -d`, mode 0700), where nobody could not even load bin/masq.js. So the checkout is
   * bind-mounted at a folder anyone can reach, in the private mount namespace that `ip netns
   * exec` gives the command, and masq is started from there: it is the same code, only reached
   * by another path.
   */
  const masqRunAsNobody = (args: string[]) => {
    const view = join(tmp, "checkout");
    mkdirSync(view, { recursive: true });
    const bin = join(view, relative(CHECKOUT, MASQ_BIN));
    return lab.exec(
      ns,
      [
        "sh",
        "-c",
        'mount --bind "$1" "$2" && shift 2 && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"',
        "sh",
        CHECKOUT,
        view,
        process.execPath,
        bin,
        "run",
        "--socket",
        join(tmp, "masq.sock"),
        ...args,
      ],
      { timeoutMs: 20_000 },
    );
  };

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masq-refuse-"));
    chmodSync(tmp, 0o755); // nobody reaches the checkout's view through it
    lab = new Lab({ prefix: "masqrefuse" });
    ns = await lab.addNamespace("gw");
    await lab.veth({ ns, dev: "lan0" }, { ns, dev: "lanpeer" });
    await lab.veth({ ns, dev: "wan0" }, { ns, dev: "wanpeer" });
    await lab.addAddr(ns, "lan0", "192.168.0.1/24");
    await lab.addAddr(ns, "wan0", "198.51.100.2/30");
    await lab.sysctl(ns, "net.ipv4.ip_local_port_range", "32768 60999");
    before0 = await snapshot();
  });

  after(async () => {
    await lab?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("not root: exit 1, says it needs root", async () => {
    const r = await masqRunAsNobody(["--inside", "lan0", "--outside", "wan0"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /masq must run as root \(or with CAP_NET_ADMIN\)/, r.stderr);
  });

  it("a missing interface is named", async () => {
    const r = await masqRun(["--inside", "lan9", "--outside", "wan0"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /lan9/, r.stderr);
  });

  it("a port range overlapping net.ipv4.ip_local_port_range is refused in interface mode", async () => {
    const r = await masqRun(["--inside", "lan0", "--outside", "wan0", "--ports", "40000-50000"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ip_local_port_range/, r.stderr);
  });

  it("an unknown config key: exit 2, names the key", async () => {
    const config = join(tmp, "bad.toml");
    writeFileSync(config, "[timeouts]\nudp_idle = 30\n");
    const r = await masqRun(["--inside", "lan0", "--outside", "wan0", "--config", config]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /udp_idle/, r.stderr);
  });

  it("inside_networks overlapping the outside interface's subnet (known only at start): exit 2, names the key", async () => {
    const config = join(tmp, "overlap.toml");
    writeFileSync(config, 'inside_networks = ["198.51.100.0/24"]\n');
    const r = await masqRun(["--inside", "lan0", "--outside", "wan0", "--config", config]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /configuration error: .*overlap\.toml: inside_networks: 198\.51\.100\.0\/24 overlaps the outside interface's network 198\.51\.100\.0\/30/,
    );
  });

  it("a forward to the gateway itself or to the LAN's broadcast address (from lan0's prefix): exit 2, names the forward", async () => {
    const cases: Array<[string, RegExp]> = [
      ["192.168.0.1:22", /forward\.0\.inside: 192\.168\.0\.1 is the gateway itself/],
      [
        "192.168.0.255:80",
        /forward\.0\.inside: 192\.168\.0\.255 is the broadcast address of 192\.168\.0\.0\/24/,
      ],
    ];
    for (const [target, re] of cases) {
      const config = join(tmp, "forward.toml");
      writeFileSync(config, `[[forward]]\noutside = "8080/tcp"\ninside = "${target}"\n`);
      const r = await masqRun(["--inside", "lan0", "--outside", "wan0", "--config", config]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re, r.stderr);
    }
  });

  it("ports below 1024 in interface mode: exit 2, names --ports and allow_low_ports", async () => {
    const r = await masqRun(["--inside", "lan0", "--outside", "wan0", "--ports", "22-2000"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--ports: 22-2000 reaches below 1024: .*allow_low_ports = true/);
  });

  /**
   * `masq run --rps` on lan0/wan0, after `prefix` (a wrapper's argv); `check` runs while it
   * runs, and masq must then stop cleanly.
   */
  const withRpsMasq = async (prefix: string[], check: (p: ReturnType<Lab["spawn"]>) => Promise<void>) => {
    const argv = [process.execPath, MASQ_BIN, "run", "--inside", "lan0", "--outside", "wan0", "--rps"];
    const p = lab.spawn(ns, [...prefix, ...argv, "--socket", join(tmp, "masq.sock")], {
      env: { ...process.env, MASQ_LOG_FORMAT: "json" },
    });
    try {
      await check(p);
    } finally {
      await p.kill("SIGTERM", 10_000);
    }
    assert.equal(p.exitCode, 0);
  };

  it("--rps steers both TUNs' received packets to every CPU but the loop's", async () => {
    await withRpsMasq([], async (p) => {
      await p.waitFor(/masq ready/, 20_000);
      const n = availableParallelism();
      for (const tun of ["masq0", "masq0-out"]) {
        const text = await lab.run(ns, ["cat", `/sys/class/net/${tun}/queues/rx-0/rps_cpus`]);
        const mask = BigInt(`0x${text.trim().replaceAll(",", "")}`);
        assert.equal(mask, n >= 2 ? (1n << BigInt(n - 1)) - 1n : 0n, `${tun}: every CPU but the loop's`);
      }
    });
  });

  it("with /sys showing another namespace's devices, masq runs but leaves RPS alone, and says so", async () => {
    // An empty /sys/class/net stands for the sysfs of another namespace, as a masq entered with
    // nsenter (no sysfs remount) would see: its devices are not masq's to change. The tmpfs is
    // mounted in the private mount namespace `ip netns exec` gives the command.
    await withRpsMasq(
      ["sh", "-c", 'mount -t tmpfs masq-test /sys/class/net && exec "$@"', "sh"],
      async (p) => {
        const line = await p.waitFor(/RPS left off/, 20_000);
        assert.match(line, /another network namespace/);
        await p.waitFor(/masq ready/, 20_000);
      },
    );
  });

  it("--dry-run prints the host plan with every step's undo and changes nothing, and needs no root", async () => {
    const sysctls = () =>
      lab.run(ns, [
        "sh",
        "-c",
        "grep -H . /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/rp_filter",
      ]);
    const sysctls0 = await sysctls();
    for (const run of [masqRun, masqRunAsNobody]) {
      const r = await run(["--inside", "lan0", "--outside", "wan0", "--dry-run"]);
      assert.equal(r.code, 0, r.stderr);
      const out = r.stdout;
      assert.match(
        out,
        /would open the TUNs masq0 \(inside\) and masq0-out \(outside\), interface mode, public 198\.51\.100\.2/,
      );
      const steps = Number(/apply these (\d+) steps/.exec(out)?.[1]);
      assert.ok(steps > 20, out);
      assert.equal(out.match(/^ +apply: /gm)?.length, steps, "each step has its command");
      assert.equal(out.match(/^ +undo: /gm)?.length, steps, "and its undo");
      assert.match(out, /apply: ip rule add pref \d+ iif wan0 ipproto tcp dport 61000-65534 lookup 101/);
      assert.match(out, /undo: {2}sysctl -q -w net\.ipv4\.ip_forward=<the value before>/);
      assert.match(out, /Nothing was changed/);
    }
    assert.equal(await snapshot(), before0, "no route, rule or device");
    assert.equal(await sysctls(), sysctls0, "no sysctl");
  });

  it("none of the refusals left a route, rule or device behind", async () => {
    assert.equal(await snapshot(), before0);
  });
});
