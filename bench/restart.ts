// The restart gap of `masq stop --keep-state && masq run` (issue 15): how long traffic through
// the gateway goes untranslated. An inside host sends a UDP datagram every 2 ms to the Internet
// host's echo service and notes when each echo comes back; the longest wait between two echoes
// across the restart is the gap (both directions must be translated for an echo to come back, so
// it runs from the last packet the stopped masq translated to the first one the new masq does).
// Each round also times, from the logs, where the new run spends it: Node and masq's modules up
// to the first log line, the snapshot restored, the host setup taken over, the packet loop
// started (from then on packets are translated), and "masq ready" (the control socket, port
// mapping and the rest, which no longer hold up traffic).
//
// Usage: npm run bench:restart [-- --rounds N] [-- --mode interface|pool] [-- --json]
// Needs root (network namespaces, named hkrestart-…); bounded: each step has a timeout.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { labScript, MASQ_BIN, type MasqProcess, startMasq } from "../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqMode, type MasqNetwork } from "../src/lab/netns.ts";

const ECHO_PORT = 7;
const PROBE_INTERVAL_MS = 2;
/** Waits between two echoes longer than this are reported. */
const GAP_FLOOR_MS = 20;

// Sends a numbered datagram every interval until the stop file exists; prints the waits between
// echoes longer than the floor as JSON [[ms since start, ms], …] and the counts.
const PROBER = `
import json, os, socket, sys, time
host, port, stop, interval, floor = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]) / 1000, float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
s.setblocking(False)
t0 = time.monotonic()
last = None
gaps, sent, got, n, told = [], 0, 0, 0, False
next_send = t0
while not (n % 50 == 0 and os.path.exists(stop)):
    n += 1
    now = time.monotonic()
    if now >= next_send:
        try:
            s.send(b"%d" % sent)
        except OSError:
            pass
        sent += 1
        next_send += interval
    while True:
        try:
            s.recv(64)
        except (BlockingIOError, ConnectionRefusedError):
            break
        now = time.monotonic()
        if last is not None and (now - last) * 1000 > floor:
            gaps.append([round((last - t0) * 1000), round((now - last) * 1000)])
        last = now
        got += 1
    if got and not told:
        print("first echo", flush=True)
        told = True
    time.sleep(min(interval, max(0, next_send - time.monotonic())))
print(json.dumps({"sent": sent, "got": got, "gaps": gaps}), flush=True)
`;

interface Round {
  gapMs: number;
  stopCliMs: number;
  /** From the stopped masq's "state kept" (the capture; the gap began just before), ms: its last log line, the stop's return. */
  stopSide: { stopped: number; returned: number };
  /** From the spawn of the new masq, ms: its first log line, restore, adopt, packet loop, ready. */
  phases: Record<string, number>;
}

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    mode: { type: "string", default: "interface" },
    json: { type: "boolean", default: false },
  },
});
const rounds = Math.max(1, Math.min(20, Number(args.rounds)));
const mode = args.mode as MasqMode;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : Math.round(((s[m - 1] as number) + (s[m] as number)) / 2);
}

/** ms from `t0` (epoch ms) to the first log line of `m` whose msg matches, or NaN. */
function logAt(m: MasqProcess, re: RegExp, t0: number): number {
  for (const line of m.proc.stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const o = JSON.parse(line) as { time?: number; msg?: string };
      if (o.time !== undefined && re.test(o.msg ?? "")) return o.time - t0;
    } catch {
      // not a log line
    }
  }
  return Number.NaN;
}

function firstLogAt(m: MasqProcess, t0: number): number {
  return logAt(m, /./, t0);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("needs root (network namespaces)");
  const tmp = mkdtempSync(join(tmpdir(), "hkrestart-"));
  let net: MasqNetwork | undefined;
  let masq: MasqProcess | undefined;
  const out: Round[] = [];
  try {
    net = await buildMasqNetwork({ prefix: "hkrestart", mode });
    const n = net;
    const echo = n.lab.spawn(n.inet.ns, [...labScript("inet-service"), "--udp", String(ECHO_PORT)]);
    await echo.waitFor(/"proto":"udp"/, 30_000);
    masq = await startMasq(n);
    for (let r = 0; r < rounds; r++) {
      const stopFile = join(tmp, `stop-${r}`);
      const probe = n.lab.spawn(n.inside[0].ns, [
        "python3",
        "-c",
        PROBER,
        n.inet.addr,
        String(ECHO_PORT),
        stopFile,
        String(PROBE_INTERVAL_MS),
        String(GAP_FLOOR_MS),
      ]);
      await probe.waitFor(/first echo/, 10_000);
      await new Promise((res) => setTimeout(res, 500));
      const began = performance.now();
      const stop = await n.lab.exec(
        n.gate.ns,
        [process.execPath, MASQ_BIN, "stop", "--keep-state", "--socket", masq.socket],
        { timeoutMs: 60_000 },
      );
      if (stop.code !== 0) throw new Error(`masq stop --keep-state: ${stop.stderr}`);
      const stopCliMs = Math.round(performance.now() - began);
      const spawnedAt = Date.now();
      const keptAt = logAt(masq, /^state kept/, 0);
      const stopSide = { stopped: logAt(masq, /^masq stopped/, keptAt), returned: spawnedAt - keptAt };
      masq = await startMasq(n);
      if (!/state restored from the snapshot/.test(masq.proc.stdout))
        throw new Error("the new masq did not restore the snapshot");
      await new Promise((res) => setTimeout(res, 1000));
      writeFileSync(stopFile, "");
      if (!(await probe.waitExit(10_000))) throw new Error("the prober did not end");
      const result = JSON.parse(probe.stdout.trim().split("\n").at(-1) ?? "{}") as {
        gaps: Array<[number, number]>;
      };
      const gapMs = Math.max(0, ...result.gaps.map((g) => g[1]));
      const phases = {
        firstLog: firstLogAt(masq, spawnedAt),
        restored: logAt(masq, /^state restored from the snapshot/, spawnedAt),
        adopted: logAt(masq, /^host setup taken over/, spawnedAt),
        packetLoop: logAt(masq, /^packet loop scheduling/, spawnedAt),
        ready: logAt(masq, /^masq ready/, spawnedAt),
      };
      out.push({ gapMs, stopCliMs, stopSide, phases });
      if (!args.json)
        process.stdout.write(
          `round ${r + 1}: gap ${gapMs} ms (masq stop --keep-state ${stopCliMs} ms; from the capture: ` +
            `stopped ${stopSide.stopped}, stop returned ${stopSide.returned} ms; new run from spawn: ` +
            `first log ${phases.firstLog}, restored ${phases.restored}, setup taken over ${phases.adopted}, ` +
            `packet loop ${phases.packetLoop}, ready ${phases.ready} ms)\n`,
        );
    }
  } finally {
    if (masq?.proc.running) await masq.stop();
    await net?.destroy();
    if (existsSync(tmp)) rmSync(tmp, { recursive: true, force: true });
  }
  const gaps = out.map((r) => r.gapMs);
  const summary = {
    rounds: out.length,
    mode,
    gapMedianMs: median(gaps),
    gapMinMs: Math.min(...gaps),
    gapMaxMs: Math.max(...gaps),
    loadavg: loadavg().map((x) => Math.round(x * 10) / 10),
    cpus: cpus().length,
    phasesMedianMs: Object.fromEntries(
      Object.keys(out[0]?.phases ?? {}).map((k) => [k, median(out.map((r) => r.phases[k] as number))]),
    ),
  };
  if (args.json) process.stdout.write(`${JSON.stringify({ summary, rounds: out })}\n`);
  else
    process.stdout.write(
      `restart gap (UDP echo every ${PROBE_INTERVAL_MS} ms across masq stop --keep-state && masq run, ${mode} mode, ` +
        `${out.length} rounds, load ${summary.loadavg.join(" ")} on ${summary.cpus} CPUs): median ${summary.gapMedianMs} ms ` +
        `(min ${summary.gapMinMs}, max ${summary.gapMaxMs}); new run, medians from spawn: ${JSON.stringify(summary.phasesMedianMs)}\n`,
    );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
