// The message of the ConfigError a configuration is refused with: the tests of `masq run`'s
// configuration assert on it (it names the key).
import assert from "node:assert/strict";
import { ConfigError } from "../../src/control/config-error.ts";

export function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail("no error");
}
