// `datapath_io` / `--datapath-io`: how the packet loop's batches reach the TUN, the check that an
// explicit "uring" was followed, and what the start-up summary says of it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import {
  checkDatapathIo,
  DATAPATH_IOS,
  datapathIoSummary,
  parseDatapathIo,
} from "../../../src/control/datapath-config.ts";

const base = { inside: ["lan0"], outside: "wan0" };
const file = (text: string) => resolveRunConfig({ ...base, config: "m.toml" }, () => text);
const onRing = { io: "uring", ioFallback: undefined };
const refused = { io: "syscalls", ioFallback: "io_uring_setup: Operation not permitted (errno 1)" };
const plain = { io: "syscalls", ioFallback: undefined };

describe("datapath_io", () => {
  it('is "auto" by default: io_uring where the ring can be set up', () => {
    assert.equal(resolveRunConfig(base).datapathIo, "auto");
  });

  it("takes each setting from the file and from --datapath-io, the flag winning", () => {
    for (const io of DATAPATH_IOS) {
      assert.equal(file(`datapath_io = "${io}"\n`).datapathIo, io);
      assert.equal(resolveRunConfig({ ...base, datapathIo: io }).datapathIo, io);
    }
    const both = resolveRunConfig(
      { ...base, config: "m.toml", datapathIo: "syscalls" },
      () => 'datapath_io = "uring"\n',
    );
    assert.equal(both.datapathIo, "syscalls");
  });

  it("refuses other values with an error naming the key or the flag", () => {
    assert.throws(
      () => file('datapath_io = "epoll"\n'),
      (e: unknown) =>
        e instanceof ConfigError && /^m\.toml: datapath_io: .*auto, uring, syscalls/.test(e.message),
    );
    assert.throws(
      () => file("datapath_io = 1\n"),
      (e: unknown) => e instanceof ConfigError && /^m\.toml: datapath_io: /.test(e.message),
    );
    assert.throws(
      () => resolveRunConfig({ ...base, datapathIo: "io_uring" }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /^--datapath-io: "io_uring" must be one of auto, uring, syscalls/.test(e.message),
    );
    assert.throws(() => parseDatapathIo("", "--datapath-io"), ConfigError);
  });

  it('an explicit "uring" that a device could not follow is an error naming the key; "auto" falls back', () => {
    assert.throws(
      () => checkDatapathIo("uring", [onRing, refused]),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.code === "MASQ_ERR_CONFIG_INVALID" &&
        /^datapath_io: "uring" cannot be used here: io_uring_setup: Operation not permitted/.test(e.message),
    );
    assert.doesNotThrow(() => checkDatapathIo("uring", [onRing, onRing]));
    assert.doesNotThrow(() => checkDatapathIo("auto", [refused, refused]));
    assert.doesNotThrow(() => checkDatapathIo("syscalls", [plain, plain]));
  });

  it("the summary says io_uring, syscalls, or syscalls and why the ring was not used", () => {
    assert.equal(datapathIoSummary([onRing, onRing]), "io_uring");
    assert.equal(datapathIoSummary([plain, plain]), "syscalls");
    assert.equal(
      datapathIoSummary([refused, refused]),
      "syscalls (io_uring unavailable: io_uring_setup: Operation not permitted (errno 1))",
    );
  });
});
