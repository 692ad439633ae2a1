import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FIGURE_NAMES, parseFigures } from "../../../bench/lib/figure-select.ts";

describe("bench:e2e --figures", () => {
  it("measures every figure when the option is absent or empty", () => {
    assert.deepEqual([...parseFigures(undefined)], [...FIGURE_NAMES]);
    assert.deepEqual([...parseFigures("  ")], [...FIGURE_NAMES]);
  });

  it("measures only the named figures, with ping and rtt naming the latency figure", () => {
    assert.deepEqual([...parseFigures("http500,ping")].sort(), ["http500", "latency"]);
    assert.deepEqual([...parseFigures(" TCP1 , rtt,")].sort(), ["latency", "tcp1"]);
  });

  it("refuses an unknown name, listing the known ones", () => {
    assert.throws(() => parseFigures("http500,http5000"), /unknown figure "http5000".*known: tcp1/);
    assert.throws(() => parseFigures(","), /names no figure/);
  });
});
