// Forwards through the control socket and the `masq forward` commands, against a real engine.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { forwardsApi } from "../../../src/control/api-handlers.ts";
import { controlCall, controlGet } from "../../../src/control/client.ts";
import { connsBody } from "../../../src/control/conns-listing.ts";
import { type ForwardsReply, formatStats } from "../../../src/control/format.ts";
import { ControlServer } from "../../../src/control/server.ts";
import { FORWARD } from "../../../src/nat/engine.ts";
import { ForwardRegistry } from "../../../src/portmap/forwards.ts";
import { cli } from "../../helpers/cli.ts";
import { ip, SYN, tcp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "../nat/engine-helpers.ts";

describe("forwards over the control socket", () => {
  let dir: string;
  let socket: string;
  let server: ControlServer;
  const engine = makeEngine();
  let registry: ForwardRegistry;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masqfwd-ctl-"));
    socket = join(dir, "masq.sock");
    registry = new ForwardRegistry({
      engine,
      publicAddresses: [ip(P)],
      stateFile: join(dir, "forwards.json"),
    });
    server = await ControlServer.start(socket, {
      health: () => ({ ok: true }),
      conns: (q) => connsBody(engine, q),
      stats: () => ({}),
      metrics: async () => ({ contentType: "text/plain", body: "" }),
      forwards: forwardsApi(registry, engine),
    });
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("masq forward add / list / del", async () => {
    const add = await cli([
      "forward",
      "add",
      "8080/tcp",
      "192.168.0.2:80",
      "--note",
      "web",
      "--socket",
      socket,
    ]);
    assert.equal(add.code, 0, add.err);
    assert.match(add.out, /^forward 1 added: 8080\/tcp 192\.168\.0\.2:80$/m);
    const r = run(engine, tcp({ src: REMOTE, dst: P, sport: 5555, dport: 8080, flags: SYN }));
    assert.equal(r.verdict, FORWARD);
    const saved = JSON.parse(readFileSync(join(dir, "forwards.json"), "utf8"));
    assert.deepEqual(saved.forwards, [{ outside: "8080/tcp", inside: "192.168.0.2:80", note: "web" }]);

    const list = await cli(["forward", "list", "--socket", socket]);
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /^ID\s+PROTO\s+OUTSIDE\s+INSIDE\s+REMOTE\s+SOURCE\s+FLOWS\s+NOTE$/m);
    assert.match(list.out, /^1\s+tcp\s+198\.51\.100\.2:8080\s+192\.168\.0\.2:80\s+\*\s+runtime\s+1\s+web$/m);
    assert.match(list.out, /mappings:\n.*ORIGIN/);
    assert.match(list.out, /forward/);

    // A mapping of another origin is listed with the forwards' pins.
    const pcp = engine.pinMapping({ proto: "udp", inAddr: ip("192.168.0.3"), inPort: 5000, origin: "pcp" });
    assert.ok("id" in pcp);
    const json = (await controlGet(socket, "/v1/forwards")) as ForwardsReply;
    assert.deepEqual(json.pins.map((p) => p.origin).sort(), ["forward", "pcp"]);

    const del = await cli(["forward", "del", "8080/tcp", "--socket", socket]);
    assert.equal(del.code, 0, del.err);
    assert.match(del.out, /forward 1 removed: 8080\/tcp 192\.168\.0\.2:80/);
    const after = (await controlGet(socket, "/v1/forwards")) as ForwardsReply;
    assert.equal(after.forwards.length, 0);
  });

  it("refusals name the problem", async () => {
    const bad = await cli(["forward", "add", "80", "192.168.0.2", "--socket", socket]);
    assert.equal(bad.code, 2, "MASQ_ERR_FORWARD_INVALID");
    assert.match(bad.err, /forward\.outside: "80" is not like "8080\/tcp"/);
    const outside = await cli(["forward", "add", "80/tcp", "10.9.9.9:80", "--socket", socket]);
    assert.match(outside.err, /10\.9\.9\.9 is not on an inside network/);
    const none = await cli(["forward", "del", "7/udp", "--socket", socket]);
    assert.match(none.err, /no forward "7\/udp"/);
    await assert.rejects(controlCall(socket, "POST", "/v1/forwards", { outside: 1 }), /body must be/);
    await assert.rejects(controlCall(socket, "PUT", "/v1/forwards"), /not allowed/);
  });

  it("masq forward list prints a note's control characters escaped (ANSI escapes, newlines, bidi)", async () => {
    const note = "\u001b[31mred\u001b[0m\nID  PROTO forged\r\t\u0007\u202eevil\u009b";
    const add = await cli([
      "forward",
      "add",
      "8181/tcp",
      "192.168.0.2:81",
      "--note",
      note,
      "--socket",
      socket,
    ]);
    assert.equal(add.code, 0, add.err);
    const list = await cli(["forward", "list", "--socket", socket]);
    assert.equal(list.code, 0, list.err);
    const escaped = "\\x1b[31mred\\x1b[0m\\nID  PROTO forged\\r\\t\\x07\\u202eevil\\x9b";
    assert.ok(list.out.includes(escaped), list.out);
    const raw = [...list.out].filter((c) => {
      const code = c.charCodeAt(0);
      return (code < 0x20 && c !== "\n") || (code >= 0x7f && code <= 0x9f) || c === "\u202e";
    });
    assert.deepEqual(raw, [], "nothing raw reaches the terminal");
    assert.doesNotMatch(list.out, /^ID {2}PROTO forged/m, "no forged row");
    // The JSON keeps the note as it was.
    const json = (await controlGet(socket, "/v1/forwards")) as ForwardsReply;
    assert.equal(json.forwards.find((f) => f.outside.endsWith(":8181"))?.note, note);
    await cli(["forward", "del", "8181/tcp", "--socket", socket]);
    // Firewall rule names come from the config file too.
    const stats = formatStats({
      uptimeSec: 1,
      mode: "pool",
      publicAddresses: [P],
      engine: engine.stats(),
      datapath: {},
      device: {},
      firewall: [{ index: 1, name: "no smtp\n  0. forged", rule: "outbound tcp", action: "drop", hits: 0 }],
    });
    assert.match(stats, /1\. no smtp\\n {2}0\. forged/);
  });

  it("a malformed %-escape in the path is the client's mistake: 400, saying so", async () => {
    for (const path of ["/v1/forwards/%zz", "/v1/forwards/%E0%A4%A", "/v1/forwards/80%2"]) {
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({ socketPath: socket, path, method: "DELETE" }, (res) => {
          let body = "";
          res.on("data", (c: Buffer) => {
            body += c.toString("utf8");
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on("error", reject);
        req.end();
      });
      assert.equal(r.status, 400, `${path}: ${r.body}`);
      assert.match(r.body, /malformed %-escape in/, path);
    }
    await assert.rejects(controlCall(socket, "DELETE", "/v1/forwards/%zz"), /malformed %-escape in "%zz"/);
    // A well-formed escape still works: "8080/tcp" arrives as one segment.
    await assert.rejects(controlCall(socket, "DELETE", "/v1/forwards/8080%2Ftcp"), /no forward "8080\/tcp"/);
  });
});
