// The error table (src/errors/codes.ts): every code has a meaning on every path, and the README's
// table says what the code says.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import {
  ERRORS,
  type ErrorCode,
  Exit,
  exitCodeOf,
  httpStatusOf,
  isErrorCode,
  natpmpResultOf,
  pcpResultOf,
} from "../../../src/errors/codes.ts";
import { errorCode, MasqError } from "../../../src/errors/masq-error.ts";
import { NatPmpResult } from "../../../src/portmap/natpmp.ts";
import { PCP_RESULT_NAMES, PcpResult } from "../../../src/portmap/pcp.ts";

const codes = Object.keys(ERRORS) as ErrorCode[];
const NATPMP_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(NatPmpResult).map(([k, v]) => [v, k]),
);

describe("error codes", () => {
  it("are MASQ_ERR_ names, each with an HTTP error status, a PCP and a NAT-PMP failure and an exit code", () => {
    assert.ok(codes.length >= 30);
    const exits = new Set<number>(Object.values(Exit));
    for (const code of codes) {
      assert.match(code, /^MASQ_ERR_[A-Z_]+$/);
      const s = httpStatusOf(code);
      assert.ok(Number.isInteger(s) && s >= 400 && s <= 599, `${code}: HTTP ${s}`);
      assert.ok(pcpResultOf(code) !== PcpResult.SUCCESS && PCP_RESULT_NAMES[pcpResultOf(code)], code);
      assert.ok(natpmpResultOf(code) !== NatPmpResult.SUCCESS && NATPMP_NAMES[natpmpResultOf(code)], code);
      assert.ok(exits.has(exitCodeOf(code)), `${code}: exit ${exitCodeOf(code)}`);
      assert.ok(ERRORS[code].summary.length > 10, code);
    }
  });

  it("keep the exit codes masq always had: 1 a failure (not root), 2 a configuration error", () => {
    assert.equal(exitCodeOf("MASQ_ERR_NOT_ROOT"), 1);
    assert.equal(exitCodeOf("MASQ_ERR_INTERNAL"), 1);
    assert.equal(exitCodeOf("MASQ_ERR_CONFIG_INVALID"), 2);
  });

  it("answer the refusals the issue named rightly: no such forward 404, a taken port 409", () => {
    assert.equal(httpStatusOf("MASQ_ERR_FORWARD_NOT_FOUND"), 404);
    assert.equal(exitCodeOf("MASQ_ERR_FORWARD_NOT_FOUND"), Exit.NOT_FOUND);
    assert.equal(httpStatusOf("MASQ_ERR_PORT_IN_USE"), 409);
    assert.equal(pcpResultOf("MASQ_ERR_HOST_PORT_QUOTA"), PcpResult.USER_EX_QUOTA);
    assert.equal(pcpResultOf("MASQ_ERR_PORT_IN_USE"), PcpResult.CANNOT_PROVIDE_EXTERNAL);
    assert.equal(pcpResultOf("MASQ_ERR_MAPPING_TABLE_FULL"), PcpResult.NO_RESOURCES);
  });

  it("isErrorCode knows the table's codes only", () => {
    assert.ok(isErrorCode("MASQ_ERR_PORT_IN_USE"));
    assert.ok(!isErrorCode("MASQ_ERR_NOPE"));
    assert.ok(!isErrorCode("toString"));
    assert.ok(!isErrorCode(undefined));
  });

  it("a thrown value that is no MasqError is MASQ_ERR_INTERNAL", () => {
    assert.equal(errorCode(new Error("x")), "MASQ_ERR_INTERNAL");
    assert.equal(errorCode("x"), "MASQ_ERR_INTERNAL");
    assert.equal(errorCode(new MasqError("MASQ_ERR_PORT_IN_USE", "x")), "MASQ_ERR_PORT_IN_USE");
  });

  it("the README's table lists every code with the table's values", () => {
    const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
    const rows = new Map<string, string[]>();
    for (const m of readme.matchAll(/^\| `(MASQ_ERR_[A-Z_]+)` \| (.*) \|$/gm))
      rows.set(m[1], m[2].split(" | "));
    assert.deepEqual([...rows.keys()].sort(), [...codes].sort());
    for (const code of codes) {
      const [http, pcp, natpmp, exit, summary] = rows.get(code) ?? [];
      assert.deepEqual(
        [Number(http), pcp, natpmp, Number(exit), summary],
        [
          httpStatusOf(code),
          PCP_RESULT_NAMES[pcpResultOf(code)],
          NATPMP_NAMES[natpmpResultOf(code)],
          exitCodeOf(code),
          ERRORS[code].summary,
        ],
        code,
      );
    }
  });
});
