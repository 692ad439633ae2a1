// The benchmark's short-connection client (bench/c/conn-rate.c), built as the bench builds it and
// run against servers on 127.0.0.1 that answer, refuse, stall or answer wrongly: every
// connection must end up completed or failed with its reason, none lost or counted twice.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { buildCTool } from "../../../bench/lib/c-tools.ts";
import type { ShortFailures } from "../../../bench/lib/http.ts";
import { exec } from "../../../src/host/exec.ts";

/** The client's JSON: the failure reasons the bench reads, and the rest of its counts. */
type Summary = ShortFailures & {
  completed: number;
  local: number;
  unfinished: number;
  seconds: number;
  first_failure_after: number;
  per_second: number[];
};

const FAILURE_KEYS = [
  "refused",
  "unreachable",
  "reset",
  "timeout_connect",
  "timeout_response",
  "bad_response",
  "local",
  "other",
] as const;

function failures(s: Summary, except?: (typeof FAILURE_KEYS)[number]): number {
  return FAILURE_KEYS.filter((k) => k !== except).reduce((a, k) => a + s[k], 0);
}

function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : 0);
    });
  });
}

describe("bench conn-rate client", () => {
  let dir = "";
  let bin = "";
  const servers: { close(): void }[] = [];
  const held: Socket[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masq-conn-rate-"));
    bin = await buildCTool(dir, "conn-rate");
  });
  after(() => {
    for (const s of held) s.destroy();
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function runClient(port: number, path: string, seconds: number, timeoutMs: number): Promise<Summary> {
    const r = await exec([bin, "127.0.0.1", String(port), path, "4", String(seconds), String(timeoutMs)], {
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Summary;
  }

  it("counts completed connections to a server that answers 200 and closes", async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain", connection: "close" });
      res.end("x".repeat(1024));
    });
    servers.push(server);
    const port = await listen(server);
    const s = await runClient(port, "/1k.bin", 1, 5000);
    assert.ok(s.completed > 0, JSON.stringify(s));
    assert.equal(failures(s), 0, JSON.stringify(s));
    assert.equal(s.first_failure_after, -1);
    assert.equal(s.per_second.length, 1);
    assert.ok(s.per_second[0] <= s.completed);
  });

  it("counts a response other than 200 as a bad response", async () => {
    const server = createServer((_req, res) => {
      res.writeHead(404, { connection: "close" });
      res.end("no");
    });
    servers.push(server);
    const port = await listen(server);
    const s = await runClient(port, "/missing", 1, 5000);
    assert.equal(s.completed, 0);
    assert.ok(s.bad_response > 0, JSON.stringify(s));
    assert.equal(failures(s, "bad_response"), 0, JSON.stringify(s));
    assert.equal(s.first_failure_after, 0);
  });

  it("counts connections to a closed port as refused", async () => {
    // A port that was just free: listen, note it, close.
    const probe = createTcpServer();
    const port = await listen(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    const s = await runClient(port, "/", 1, 5000);
    assert.equal(s.completed, 0);
    assert.ok(s.refused > 0, JSON.stringify(s));
    assert.equal(failures(s, "refused"), 0, JSON.stringify(s));
  });

  it("fails a connection whose server never answers after the timeout, once", async () => {
    const server = createTcpServer((sock) => {
      held.push(sock); // accepted, never answered
    });
    servers.push(server);
    const port = await listen(server);
    const s = await runClient(port, "/", 2, 200);
    assert.equal(s.completed, 0);
    // Four slots, each connection failing once after 200 ms (then replaced): at most 4 x 10 in
    // two seconds, not once per sweep of the slots (every 10 ms).
    assert.ok(s.timeout_response >= 4 && s.timeout_response <= 40, JSON.stringify(s));
    assert.equal(failures(s, "timeout_response"), 0, JSON.stringify(s));
    assert.equal(s.unfinished, 4);
  });
});
