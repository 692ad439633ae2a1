// Where the packet loop runs and where RPS sends the kernel's work on the packets it writes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import {
  applyDatapathPriority,
  DATAPATH_RT_PRIORITY,
  placeDatapath,
} from "../../../src/datapath/cpu-placement.ts";
import { cpuSetMask } from "../../../src/host/plan.ts";

const base = { inside: ["lan0"], outside: "wan0" };

describe("datapath CPU placement", () => {
  it("auto: the loop on the last allowed CPU, RPS on the others", () => {
    assert.deepEqual(placeDatapath("auto", [0, 1], true), { datapathCpu: 1, rpsCpus: [0] });
    assert.deepEqual(placeDatapath("auto", [3, 0, 2, 1], true), { datapathCpu: 3, rpsCpus: [0, 1, 2] });
    assert.deepEqual(placeDatapath("auto", [2, 5], false), { datapathCpu: 5 }, "no RPS when it is off");
  });

  it("auto on one CPU: nothing to pin, no RPS", () => {
    assert.deepEqual(placeDatapath("auto", [0], true), {});
    assert.deepEqual(placeDatapath("auto", [4], true), {});
  });

  it("off: unpinned, RPS over every CPU (as before pinning)", () => {
    assert.deepEqual(placeDatapath("off", [0, 1], true), { rpsCpus: [0, 1] });
    assert.deepEqual(placeDatapath("off", [0], true), {});
    assert.deepEqual(placeDatapath("off", [0, 1], false), {});
  });

  it("a CPU number: pinned there, RPS on the rest; a CPU the process may not use is refused", () => {
    assert.deepEqual(placeDatapath(0, [0, 1, 2], true), { datapathCpu: 0, rpsCpus: [1, 2] });
    assert.deepEqual(placeDatapath(0, [0], true), { datapathCpu: 0 });
    assert.throws(
      () => placeDatapath(7, [0, 1], true),
      (e: unknown) =>
        e instanceof ConfigError && /^datapath_cpu: CPU 7 is not one .*allowed: 0, 1/.test(e.message),
    );
  });

  it("sysfs masks of CPU sets", () => {
    assert.equal(cpuSetMask([0]), "1");
    assert.equal(cpuSetMask([1]), "2");
    assert.equal(cpuSetMask([0, 2]), "5");
    assert.equal(cpuSetMask([33]), "2,00000000");
    assert.throws(() => cpuSetMask([]), RangeError);
    assert.throws(() => cpuSetMask([-1]), RangeError);
  });

  it("datapath_cpu in the config and --datapath-cpu; bad values name the key", () => {
    assert.equal(resolveRunConfig(base).datapathCpu, "auto");
    const file = (text: string) => resolveRunConfig({ ...base, config: "m.toml" }, () => text);
    assert.equal(file('datapath_cpu = "off"\n').datapathCpu, "off");
    assert.equal(file("datapath_cpu = 3\n").datapathCpu, 3);
    assert.equal(resolveRunConfig({ ...base, datapathCpu: "2" }).datapathCpu, 2);
    for (const bad of ['datapath_cpu = "fast"\n', "datapath_cpu = -1\n", "datapath_cpu = 1.5\n"])
      assert.throws(
        () => file(bad),
        (e: unknown) => e instanceof ConfigError && /^m\.toml: datapath_cpu: /.test(e.message),
        bad,
      );
    assert.throws(
      () => resolveRunConfig({ ...base, datapathCpu: "x" }),
      (e: unknown) => e instanceof ConfigError && /^--datapath-cpu: /.test(e.message),
    );
  });

  it("busy_poll_us and --busy-poll: 0 (off) by default, bounded, bad values name the key", () => {
    assert.equal(resolveRunConfig(base).busyPollUs, 0);
    const file = (text: string) => resolveRunConfig({ ...base, config: "m.toml" }, () => text);
    assert.equal(file("busy_poll_us = 50\n").busyPollUs, 50);
    assert.equal(resolveRunConfig({ ...base, busyPoll: "200" }).busyPollUs, 200);
    for (const bad of ["busy_poll_us = -1\n", "busy_poll_us = 2.5\n", "busy_poll_us = 20000\n"])
      assert.throws(
        () => file(bad),
        (e: unknown) => e instanceof ConfigError && /^m\.toml: busy_poll_us: /.test(e.message),
        bad,
      );
    for (const bad of ["x", "-5", "10001"])
      assert.throws(
        () => resolveRunConfig({ ...base, busyPoll: bad }),
        (e: unknown) => e instanceof ConfigError && /^--busy-poll: /.test(e.message),
        bad,
      );
  });

  it("datapath_priority and --datapath-priority: realtime by default, bad values name the key", () => {
    assert.equal(resolveRunConfig(base).datapathPriority, "realtime");
    const file = (text: string) => resolveRunConfig({ ...base, config: "m.toml" }, () => text);
    assert.equal(file('datapath_priority = "normal"\n').datapathPriority, "normal");
    assert.equal(resolveRunConfig({ ...base, datapathPriority: "normal" }).datapathPriority, "normal");
    assert.throws(
      () => file('datapath_priority = "high"\n'),
      (e: unknown) => e instanceof ConfigError && /^m\.toml: datapath_priority: /.test(e.message),
    );
    assert.throws(
      () => resolveRunConfig({ ...base, datapathPriority: "fifo" }),
      (e: unknown) => e instanceof ConfigError && /^--datapath-priority: .*realtime, normal/.test(e.message),
    );
  });

  it("realtime puts the loop's thread under SCHED_FIFO at the lowest priority; normal leaves it", () => {
    const calls: number[] = [];
    const addon = (errno: number) => ({
      setThreadRealtime: (p: number) => {
        calls.push(p);
        return errno;
      },
    });
    assert.equal(applyDatapathPriority("realtime", addon(0)), "SCHED_FIFO 1");
    assert.deepEqual(calls, [DATAPATH_RT_PRIORITY]);
    assert.equal(DATAPATH_RT_PRIORITY, 1, "below the kernel's own real-time threads");
    calls.length = 0;
    assert.equal(applyDatapathPriority("normal", addon(0)), "normal priority");
    assert.deepEqual(calls, [], "normal asks the kernel for nothing");
  });

  it("a refused SCHED_FIFO (no CAP_SYS_NICE) leaves the loop running at normal priority, said why", () => {
    const eperm = { setThreadRealtime: () => 1 };
    assert.match(
      applyDatapathPriority("realtime", eperm),
      /^normal priority \(SCHED_FIFO refused: errno 1, EPERM/,
    );
  });
});
