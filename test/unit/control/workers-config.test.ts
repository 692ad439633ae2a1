import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";

const base = { inside: ["lan0"], outside: "wan0" };
const withFile = (text: string) => resolveRunConfig({ ...base, config: "masq.toml" }, () => text);

describe("workers", () => {
  it("is 1 by default and when asked for", () => {
    assert.equal(resolveRunConfig(base).workers, 1);
    assert.equal(withFile("workers = 1\n").workers, 1);
  });

  it("more than one is refused as not yet built, naming the key; 0 or a fraction is no count", () => {
    for (const [text, want] of [
      ["workers = 2\n", /masq\.toml: workers: 2 workers: not yet/],
      ["workers = 0\n", /workers/],
      ["workers = 1.5\n", /workers.*whole number/],
    ] as const)
      assert.throws(
        () => withFile(text),
        (e: unknown) => e instanceof ConfigError && want.test(e.message),
        text,
      );
  });
});
