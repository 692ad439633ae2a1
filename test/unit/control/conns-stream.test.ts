// `masq conns` at scale: the control socket streams the connection table in chunks (JSON or the
// text table) with filters, a limit and totals; many listings at once all complete, and the
// number open at once is bounded.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { MAX_STREAMS } from "../../../src/control/chunked.ts";
import { controlGet, controlStream } from "../../../src/control/client.ts";
import { connsBody } from "../../../src/control/conns-listing.ts";
import { type ConnsReply, formatPins } from "../../../src/control/format.ts";
import { ControlServer, type ControlSource } from "../../../src/control/server.ts";
import { FORWARD } from "../../../src/nat/engine.ts";
import { CLI_ARGV, CLI_SCRIPT, cli } from "../../helpers/cli.ts";
import { ACK, icmpEcho, SYN, tcp, udp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE } from "../nat/engine-helpers.ts";

/** Counts the lines of a stream and keeps the first few and the last. */
class LineCounter extends Writable {
  lines = 0;
  /** How many first lines to keep. */
  keep = 3;
  head: string[] = [];
  private tail = "";
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    const text = this.tail + chunk.toString("utf8");
    const parts = text.split("\n");
    this.tail = parts.pop() ?? "";
    this.lines += parts.length;
    for (const p of parts) if (this.head.length < this.keep) this.head.push(p);
    this.last = parts.length > 0 ? parts[parts.length - 1] : this.last;
    done();
  }
  last = "";
}

/** The longest gap between ticks of a 1 ms timer while `fn` runs: how long the loop was held. */
async function longestLoopGap(fn: () => Promise<void>): Promise<number> {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return worst;
}

const FLOWS = 200_000;

/** A control server whose listings come from `engine`. */
function serveConns(socket: string, engine: ReturnType<typeof makeEngine>): Promise<ControlServer> {
  return ControlServer.start(socket, {
    health: () => ({ ok: true }),
    conns: (q) => connsBody(engine, q),
    stats: () => ({}),
    metrics: async () => ({ contentType: "text/plain", body: "" }),
  });
}

describe("masq conns with 200 k flows", () => {
  let dir: string;
  let socket: string;
  let server: ControlServer;
  const engine = makeEngine({ maxFlows: 262_144, maxFlowsPerHost: 262_144 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masq-conns-"));
    socket = join(dir, "masq.sock");
    // One inside socket to 200 k remote endpoints (4 addresses x 50 k ports), as a scan would.
    for (let i = 0; i < FLOWS; i++) {
      const p = udp({
        src: "192.168.0.2",
        dst: `203.0.113.${10 + (i % 4)}`,
        sport: 40000,
        dport: 1 + (i >> 2),
      });
      assert.equal(engine.process(p, 0, p.length, 1_000_000), FORWARD);
    }
    server = await serveConns(socket, engine);
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints the text table with every flow and the total, in chunks that leave the loop free", async (t) => {
    const out = new LineCounter();
    const gap = await longestLoopGap(() => controlStream(socket, "/v1/conns?format=text", out));
    assert.match(out.head[0], /^PROTO\s+INSIDE\s+OUTSIDE\s+REMOTE\s+STATE/);
    assert.match(
      out.head[1],
      /^udp\s+192\.168\.0\.2:40000\s+198\.51\.100\.2:\d+\s+203\.0\.113\.1[0-3]:\d+\s+active/,
    );
    assert.equal(out.lines, FLOWS + 2, "header, one row per flow, total");
    assert.equal(out.last, `${FLOWS} connections`);
    t.diagnostic(`longest event-loop gap while listing ${FLOWS} flows as text: ${gap.toFixed(1)} ms`);
  });

  it("streams one JSON document with every flow", async (t) => {
    const out = new LineCounter();
    const gap = await longestLoopGap(() => controlStream(socket, "/v1/conns", out));
    assert.equal(out.head[0], '{"flows":[');
    assert.equal(out.lines, FLOWS + 2);
    assert.match(out.last, new RegExp(`^\\],"total":${FLOWS},"matched":${FLOWS},"pins":\\[\\]\\}$`));
    t.diagnostic(`longest event-loop gap while listing ${FLOWS} flows as JSON: ${gap.toFixed(1)} ms`);
  });

  it("--limit keeps the most recently active; filters count what they match", async () => {
    const late = udp({ src: "192.168.0.3", dst: REMOTE, sport: 5000, dport: 53 });
    assert.equal(engine.process(late, 0, late.length, 1_005_000), FORWARD);
    const top = (await controlGet(socket, "/v1/conns?limit=1")) as ConnsReply;
    assert.equal(top.flows.length, 1);
    assert.equal(top.flows[0].inside.addr, "192.168.0.3", "the newest flow first");
    assert.equal(top.total, FLOWS + 1);
    const some = (await controlGet(socket, "/v1/conns?host=203.0.113.12&limit=10")) as ConnsReply;
    assert.equal(some.matched, FLOWS / 4);
    assert.equal(some.flows.length, 10);
    assert.ok(some.flows.every((f) => f.remote.addr === "203.0.113.12"));
  });

  it("every flow listed is the engine's view of it, as JSON.stringify writes it", async () => {
    const out = new LineCounter();
    out.keep = 5001;
    await controlStream(socket, "/v1/conns?limit=5000", out);
    const listed = out.head.slice(1, 5001);
    const byKey = new Map(
      engine
        .flows(5000)
        .map((v) => [`${v.inside.addr} ${v.remote.addr}:${v.remote.port}`, JSON.stringify(v)]),
    );
    assert.equal(listed.length, 5000);
    for (const line of listed) {
      const v = JSON.parse(line.replace(/,$/, "")) as ConnsReply["flows"][number];
      assert.equal(line.replace(/,$/, ""), byKey.get(`${v.inside.addr} ${v.remote.addr}:${v.remote.port}`));
    }
  });

  it("a table of 200 k rows formats (no argument-spread limit on its column widths)", () => {
    const pins = Array.from({ length: FLOWS }, (_, i) => ({
      id: i,
      protocol: "udp" as const,
      inside: { addr: "192.168.0.2", port: i % 65536 },
      outside: { addr: P, port: i % 65536 },
      remote: "*",
      origin: "pcp",
      note: "",
      expiresInSec: 60,
      flows: 0,
    }));
    assert.ok(formatPins(pins).endsWith(`\n${FLOWS} mappings pinned\n`));
  });
});

describe("masq conns over the control socket", () => {
  let dir: string;
  let socket: string;
  let server: ControlServer;
  const engine = makeEngine({ maxFlows: 32_768, maxFlowsPerHost: 32_768 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masq-conns-"));
    socket = join(dir, "masq.sock");
    for (let i = 0; i < 20_000; i++) {
      const p = udp({ src: "192.168.0.2", dst: "192.0.2.1", sport: 10000, dport: 1 + i });
      engine.process(p, 0, p.length, 1_000_000);
    }
    const syn = tcp({ src: "192.168.0.3", dst: REMOTE, sport: 33000, dport: 80, flags: SYN });
    engine.process(syn, 0, syn.length, 1_001_000);
    const syn2 = tcp({ src: "192.168.0.3", dst: REMOTE, sport: 33001, dport: 80, flags: SYN, seq: 1000 });
    engine.process(syn2, 0, syn2.length, 1_002_000);
    // The second connection's SYN-ACK comes back (to the port masq gave it), then the client's ACK.
    const out2 = engine.flows().find((f) => f.inside.port === 33001);
    assert.ok(out2);
    const synAck = tcp({
      src: REMOTE,
      dst: P,
      sport: 80,
      dport: out2.outside.port,
      flags: SYN | ACK,
      seq: 5000,
      ack: 1001,
    });
    engine.process(synAck, 0, synAck.length, 1_002_000);
    const ack = tcp({
      src: "192.168.0.3",
      dst: REMOTE,
      sport: 33001,
      dport: 80,
      flags: ACK,
      seq: 1001,
      ack: 5001,
    });
    engine.process(ack, 0, ack.length, 1_002_000);
    const ping = icmpEcho({ src: "192.168.0.4", dst: REMOTE, id: 77 });
    engine.process(ping, 0, ping.length, 1_003_000);
    server = await serveConns(socket, engine);
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("ten listings at once all complete, each with every flow", async () => {
    const replies = (await Promise.all(
      Array.from({ length: 10 }, () => controlGet(socket, "/v1/conns", 60_000)),
    )) as ConnsReply[];
    for (const r of replies) {
      assert.equal(r.total, 20_003);
      assert.equal(r.flows.length, 20_003);
    }
  });

  it("masq conns: filters, limit and the total in the text table and in JSON", async () => {
    const tcpOnly = await cli(["conns", "--proto", "tcp", "--socket", socket]);
    assert.equal(tcpOnly.code, 0, tcpOnly.err);
    const rows = tcpOnly.out.trimEnd().split("\n");
    assert.match(rows[0], /^PROTO\s+INSIDE/);
    assert.deepEqual(
      rows.slice(1, -1).map((r) => r.split(/\s+/)[1]),
      ["192.168.0.3:33001", "192.168.0.3:33000"],
      "newest activity first",
    );
    assert.equal(rows.at(-1), "showing 2 of 2 matching connections (20003 in the table)");

    const est = await cli([
      "conns",
      "--state",
      "established",
      "--host",
      "203.0.113.0/24",
      "--socket",
      socket,
    ]);
    assert.equal(est.code, 0, est.err);
    assert.match(est.out, /^tcp\s+192\.168\.0\.3:33001\s.*\sestablished\s/m);
    assert.match(est.out, /showing 1 of 1 matching connections \(20003 in the table\)\n$/);

    const limited = await cli(["conns", "--limit", "3", "--socket", socket]);
    assert.match(limited.out, /^icmp\s+192\.168\.0\.4:77\s/m);
    assert.match(limited.out, /showing 3 of 20003 connections \(most recently active first\)\n$/);

    const json = await cli(["conns", "--json", "--host", "192.168.0.4", "--socket", socket]);
    assert.equal(json.code, 0, json.err);
    const reply = JSON.parse(json.out) as ConnsReply;
    assert.deepEqual(
      reply.flows.map((f) => [f.protocol, f.inside.port]),
      [["icmp", 77]],
    );
    assert.equal(reply.matched, 1);
    assert.equal(reply.total, 20_003);

    const none = await cli(["conns", "--host", "10.9.0.0/16", "--socket", socket]);
    assert.equal(none.out, "no connections (20003 in the table)\n");
  });

  it("refuses a bad query with a clear error naming the parameter", async () => {
    const bad: Array<[string, RegExp]> = [
      ["limit=-1", /limit must be an integer/],
      ["limit=1.5", /limit must be an integer/],
      [
        "proto=sctq",
        /proto must be one of icmp, ipip, tcp, udp, dccp, ipv6, gre, esp, sctp, udplite or a protocol number 1-255/,
      ],
      ["proto=256", /proto must be one of/],
      ["state=open", /state must be one of active, syn-sent/],
      ["host=300.1.1.1", /host must be an IPv4 address or prefix/],
      ["host=10.0.0.0/33", /host must be an IPv4 address or prefix/],
      ["format=xml", /format must be json or text/],
      ["lmit=3", /unknown parameter "lmit"/],
    ];
    for (const [q, re] of bad) await assert.rejects(controlGet(socket, `/v1/conns?${q}`), re, q);
    const cliBad = await cli(["conns", "--proto", "sctq", "--socket", socket]);
    assert.notEqual(cliBad.code, 0);
    assert.match(cliBad.err, /sctq/);
  });

  it("`masq conns | head` ends quietly: a reader that stops is no error", async () => {
    const err = await new Promise<string>((resolve) => {
      execFile(
        "sh",
        [
          "-c",
          '{ "$0" --import tsx --input-type=module -e "$1" conns --socket "$2"; echo "masq exit $?" >&2; } | head -n 2 >/dev/null',
          CLI_ARGV[0],
          CLI_SCRIPT,
          socket,
        ],
        { timeout: 30_000 },
        (_e, _out, stderr) => resolve(stderr),
      );
    });
    assert.match(err, /^masq exit 0$/m, err);
    assert.doesNotMatch(err, /EPIPE|Error/, err);
  });
});

/** The status of GET /v1/conns; the request is dropped once the answer begins. */
function connsStatus(socket: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path: "/v1/conns" }, (res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    req.on("error", (err: NodeJS.ErrnoException) => (err.code === "ECONNRESET" ? undefined : reject(err)));
    req.end();
  });
}

describe("listings open at once are bounded", () => {
  it(`beyond ${MAX_STREAMS} open listings the next is refused (503) until one ends or its client goes`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "masq-conns-"));
    const socket = join(dir, "masq.sock");
    let release = false;
    const source: ControlSource = {
      health: () => ({ ok: true }),
      // A listing that lasts as long as the test wants: empty chunks until released.
      conns: () => {
        let done = false;
        return {
          contentType: "application/json",
          next: () => {
            if (done) return null;
            if (!release) return new Uint8Array(0);
            done = true;
            return Buffer.from('{"flows":[],"total":0}\n');
          },
        };
      },
      stats: () => ({}),
      metrics: async () => ({ contentType: "text/plain", body: "" }),
    };
    const server = await ControlServer.start(socket, source);
    try {
      const open = Array.from({ length: MAX_STREAMS - 1 }, () => controlGet(socket, "/v1/conns", 30_000));
      // The last free slot goes to a client that leaves once its answer has begun.
      assert.equal(await connsStatus(socket), 200);
      // Until the server has seen it go, every slot is taken; then one is free again.
      let status = 503;
      for (let i = 0; i < 250 && status === 503; i++) {
        status = await connsStatus(socket);
        if (status === 503) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(status, 200, "an abandoned listing gives its slot back");
      assert.equal(await connsStatus(socket), 200);
      release = true;
      const replies = (await Promise.all(open)) as Array<{ total: number }>;
      assert.equal(replies.length, MAX_STREAMS - 1);
      assert.ok(replies.every((r) => r.total === 0));
    } finally {
      release = true;
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a full set of open listings answers 503 with a clear message", async () => {
    const dir = mkdtempSync(join(tmpdir(), "masq-conns-"));
    const socket = join(dir, "masq.sock");
    let release = false;
    const server = await ControlServer.start(socket, {
      health: () => ({ ok: true }),
      conns: () => ({ contentType: "text/plain", next: () => (release ? null : new Uint8Array(0)) }),
      stats: () => ({}),
      metrics: async () => ({ contentType: "text/plain", body: "" }),
    });
    try {
      const open = Array.from({ length: MAX_STREAMS }, () => controlGet(socket, "/v1/conns", 30_000));
      let refused: Error | undefined;
      for (let i = 0; i < 250 && !refused; i++)
        refused = await controlGet(socket, "/v1/conns", 200).then(
          () => undefined,
          (err: Error) => (/in progress/.test(err.message) ? err : undefined),
        );
      assert.match(String(refused), /32 listings are in progress; try again shortly/);
      release = true;
      await Promise.all(open);
    } finally {
      release = true;
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
