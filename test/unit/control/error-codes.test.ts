// Refusals through the control socket carry `{ error, code }` with the code's HTTP status, and
// the `masq` command exits with the code's exit code; the config names a bad forward's key from
// the error's fields.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { forwardsApi } from "../../../src/control/api-handlers.ts";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { ConfigError } from "../../../src/control/config-error.ts";
import { connsBody } from "../../../src/control/conns-listing.ts";
import { ControlServer } from "../../../src/control/server.ts";
import { type ErrorCode, exitCodeOf, httpStatusOf } from "../../../src/errors/codes.ts";
import { ForwardError, ForwardRegistry, parseForward } from "../../../src/portmap/forwards.ts";
import { cli } from "../../helpers/cli.ts";
import { ip } from "../../helpers/packets.ts";
import { makeEngine, P } from "../nat/engine-helpers.ts";

function call(socketPath: string, method: string, path: string, body?: object) {
  return new Promise<{ status: number; body: { error?: string; code?: string } }>((resolve, reject) => {
    const req = request({ socketPath, method, path }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => {
        text += c.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe("error codes on the control socket and the command line", () => {
  let dir: string;
  let socket: string;
  let server: ControlServer;
  const engine = makeEngine({ maxMappings: 1024 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masq-codes-"));
    socket = join(dir, "masq.sock");
    const registry = new ForwardRegistry({ engine, publicAddresses: [ip(P)] });
    server = await ControlServer.start(socket, {
      health: () => ({ ok: true }),
      conns: (q) => connsBody(engine, q),
      stats: () => ({}),
      metrics: async () => ({ contentType: "text/plain", body: "" }),
      forwards: forwardsApi(registry, engine),
    });
    await registry.add(parseForward({ outside: "8080/tcp", inside: "192.168.0.2:80" }), "config");
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, string, string, object | undefined, ErrorCode]> = [
    ["no such forward", "DELETE", "/v1/forwards/9999%2Ftcp", undefined, "MASQ_ERR_FORWARD_NOT_FOUND"],
    [
      "a forward written wrong",
      "POST",
      "/v1/forwards",
      { outside: "80", inside: "x" },
      "MASQ_ERR_FORWARD_INVALID",
    ],
    [
      "an outside port another forward holds",
      "POST",
      "/v1/forwards",
      { outside: "8080/tcp", inside: "192.168.0.3:80" },
      "MASQ_ERR_PORT_IN_USE",
    ],
    [
      "an inside endpoint forwarded already",
      "POST",
      "/v1/forwards",
      { outside: "8081/tcp", inside: "192.168.0.2:80" },
      "MASQ_ERR_ALREADY_MAPPED",
    ],
    [
      "an inside host on no inside network",
      "POST",
      "/v1/forwards",
      { outside: "8082/tcp", inside: "10.9.9.9:80" },
      "MASQ_ERR_NOT_INSIDE",
    ],
    [
      "an outside address that is not masq's",
      "POST",
      "/v1/forwards",
      { outside: "203.0.113.1:8083/tcp", inside: "192.168.0.2:81" },
      "MASQ_ERR_NOT_PUBLIC_ADDRESS",
    ],
    ["a body that is no forward", "POST", "/v1/forwards", { outside: 1 }, "MASQ_ERR_BAD_REQUEST"],
    ["a bad conns query", "GET", "/v1/conns?limit=x", undefined, "MASQ_ERR_BAD_REQUEST"],
    ["an unknown path", "GET", "/v1/nothing", undefined, "MASQ_ERR_NO_SUCH_ENDPOINT"],
    ["a method the path has not", "PUT", "/v1/forwards", undefined, "MASQ_ERR_METHOD_NOT_ALLOWED"],
    ["a malformed escape", "DELETE", "/v1/forwards/%zz", undefined, "MASQ_ERR_BAD_REQUEST"],
  ];
  for (const [what, method, path, body, code] of cases)
    it(`${what}: ${code}, HTTP ${httpStatusOf(code)}`, async () => {
      const r = await call(socket, method, path, body);
      assert.equal(r.body.code, code, JSON.stringify(r.body));
      assert.equal(r.status, httpStatusOf(code));
      assert.ok(typeof r.body.error === "string" && r.body.error.length > 0);
    });

  it("no such forward is 404, not 400 as before", async () => {
    assert.equal((await call(socket, "DELETE", "/v1/forwards/7")).status, 404);
  });

  it("masq forward exits with the code's exit code and prints the message", async () => {
    const gone = await cli(["forward", "del", "9999/tcp", "--socket", socket]);
    assert.equal(gone.code, exitCodeOf("MASQ_ERR_FORWARD_NOT_FOUND"));
    assert.equal(gone.code, 4);
    assert.match(gone.err, /^masq: masq refused \/v1\/forwards\/9999%2Ftcp: no forward "9999\/tcp"/);
    const taken = await cli(["forward", "add", "8080/tcp", "192.168.0.4:80", "--socket", socket]);
    assert.equal(taken.code, 5, taken.err);
    assert.match(taken.err, /is in use/);
    const bad = await cli(["forward", "add", "80", "192.168.0.4", "--socket", socket]);
    assert.equal(bad.code, 2, bad.err);
    const none = await cli(["stats", "--socket", join(dir, "none.sock")]);
    assert.equal(none.code, 3, none.err);
  });

  it("a bad forward in the config is named by its key from ForwardError's fields", () => {
    try {
      parseForward({ outside: "8080/tcp", inside: "192.168.0.2:99999" }, "forward.3");
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof ForwardError);
      assert.equal(err.code, "MASQ_ERR_FORWARD_INVALID");
      assert.equal(err.key, "forward.3.inside");
      assert.equal(err.problem, "port 99999 is not 1-65535");
    }
    const text = '[[forward]]\noutside = "8080/tcp"\ninside = "192.168.0.2: 80"\n';
    try {
      resolveRunConfig({ inside: ["lan0"], outside: "wan0", config: "m.toml" }, () => text);
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, "MASQ_ERR_CONFIG_INVALID");
      assert.equal(err.key, "m.toml: forward.0.inside");
      assert.equal(err.problem, '"192.168.0.2: 80" is not like "192.168.0.2:80" or "192.168.0.2"');
    }
  });
});
