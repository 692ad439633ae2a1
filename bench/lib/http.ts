// HTTP loads through one side, against lighttpd on the Internet host: many parallel keep-alive
// connections fetching a 100 KB body (wrk), and short connections, one request each, opened as
// fast as they complete (the bench's own client, bench/c/conn-rate.c, which counts every failed
// connection with its reason). The loads of a household or an office (issue 17). Each run is
// bounded in time; the CPU of the generator, the server and (given) masq is sampled over it.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { LabProcess } from "../../src/lab/netns.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";
import { type CpuReport, CpuWatch } from "./cpu.ts";
import { oneLine, parseJson, type Side } from "./measure.ts";

export const HTTP_PORT = 80;
/** The parallel-connection load's body: 100 KB, as issue 17 measured it. */
export const BIG_PATH = "/100k.bin";
export const BIG_BYTES = 100 * 1024;
/** The short-connection load's body: small, so the figure is about connections, not bytes. */
export const SMALL_PATH = "/1k.bin";
export const SMALL_BYTES = 1024;
/** wrk's request timeout: long enough that masq's slowest requests still count as latency. */
export const WRK_TIMEOUT_S = 10;
/**
 * lighttpd's worker processes, one per CPU: a single lighttpd process was the kernel side's
 * limit (at 96% of its core) with 500 and 50 connections.
 */
export const WEB_WORKERS = availableParallelism();

export interface HttpFiles {
  lighttpdConf: string;
  wrkScript: string;
  /** The short-connection client, compiled for this run. */
  connRate: string;
}

/**
 * The web root, lighttpd's configuration, wrk's report script and the compiled client, in `dir`
 * (which the caller removes). Keep-alive is capped far above what a run sends, so wrk's
 * connections stay open for the whole run.
 */
export async function prepareHttpFiles(dir: string, connRate: string): Promise<HttpFiles> {
  const root = join(dir, "www");
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, BIG_PATH.slice(1)), Buffer.alloc(BIG_BYTES, "m"));
  writeFileSync(join(root, SMALL_PATH.slice(1)), Buffer.alloc(SMALL_BYTES, "m"));
  const lighttpdConf = join(dir, "lighttpd.conf");
  writeFileSync(
    lighttpdConf,
    [
      `server.document-root = "${root}"`,
      `server.port = ${HTTP_PORT}`,
      "server.max-fds = 16384",
      "server.max-connections = 8192",
      "server.listen-backlog = 4096",
      "server.max-keep-alive-requests = 1000000",
      `server.max-worker = ${WEB_WORKERS}`,
      "",
    ].join("\n"),
  );
  // wrk's own summary, exact (its printed one rounds and scales its units).
  const wrkScript = join(dir, "report.lua");
  writeFileSync(
    wrkScript,
    `done = function(s, lat, req)
  io.write(string.format('{"requests":%.0f,"bytes":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"mean_us":%.1f,"p99_us":%.0f,"max_us":%.0f}\\n',
    s.requests, s.bytes, s.duration, s.errors.connect, s.errors.read, s.errors.write, s.errors.status,
    s.errors.timeout, lat.mean, lat:percentile(99), lat.max))
end
`,
  );
  return { lighttpdConf, wrkScript, connRate };
}

export interface WebServer {
  /** lighttpd's master, which only watches its workers. */
  proc: LabProcess;
  /** The workers serving the requests: their CPU is printed with every HTTP figure. */
  workers: number[];
}

/**
 * lighttpd on the side's Internet host. In a session of its own (setsid execs it, same pid):
 * lighttpd's master stops its workers by signalling its whole process group, which would
 * otherwise be the bench's.
 */
export async function startWebServer(side: Side, files: HttpFiles): Promise<WebServer> {
  const { net } = side;
  const proc = net.lab.spawn(net.inet.ns, ["setsid", "lighttpd", "-D", "-f", files.lighttpdConf]);
  await waitListening(net.lab, net.inet.ns, "tcp", HTTP_PORT, { timeoutMs: 15_000 });
  const workers = await waitUntil(
    `lighttpd's ${WEB_WORKERS} workers`,
    () => {
      const w = childPids(proc.pid);
      return w.length >= WEB_WORKERS && w;
    },
    { timeoutMs: 15_000, intervalMs: 50, describe: () => `children ${childPids(proc.pid).join(" ")}` },
  );
  if (!proc.running) throw new Error(`lighttpd exited: ${oneLine(proc.stderr)}`);
  return { proc, workers };
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** The names under which the web server's workers appear in a CPU report. */
export function webWorkerNames(web: WebServer): string[] {
  return web.workers.map((_p, i) => `lighttpd-${i + 1}`);
}

/** Runs `argv` on the first inside host to its end (bounded), sampling CPU meanwhile. */
async function runGenerator(
  side: Side,
  web: WebServer,
  name: string,
  argv: string[],
  maxSeconds: number,
  watchAlso: Readonly<Record<string, number>>,
): Promise<{ stdout: string; cpu: CpuReport }> {
  const { net } = side;
  if (!web.proc.running) throw new Error("lighttpd on the Internet host is not running");
  const p = net.lab.spawn(net.inside[0].ns, argv);
  const workers = Object.fromEntries(webWorkerNames(web).map((n, i) => [n, web.workers[i]]));
  const watch = new CpuWatch({ [name]: p.pid, ...workers, ...watchAlso });
  const ended = await p.waitExit(maxSeconds * 1000);
  const cpu = watch.stop();
  if (!ended) {
    await p.kill("SIGKILL", 1000);
    throw new Error(`${name} did not end within ${maxSeconds} s`);
  }
  if (p.exitCode !== 0)
    throw new Error(`${name} exited with ${p.exitCode}: ${oneLine(p.stderr || p.stdout)}`);
  return { stdout: p.stdout, cpu };
}

export interface WrkErrors {
  connect: number;
  read: number;
  write: number;
  timeout: number;
  /** Responses other than 2xx/3xx. */
  status: number;
}

export interface WrkResult {
  reqPerSec: number;
  /** Bytes read (headers and bodies) per second, in 10^6 bytes. */
  mbPerSec: number;
  meanMs: number;
  p99Ms: number;
  maxMs: number;
  requests: number;
  errors: WrkErrors;
  cpu: CpuReport;
}

export function wrkErrorCount(e: WrkErrors): number {
  return e.connect + e.read + e.write + e.timeout + e.status;
}

/** wrk from the first inside host: `connections` keep-alive connections on `threads` threads. */
export async function measureWrk(
  side: Side,
  web: WebServer,
  files: HttpFiles,
  opts: {
    connections: number;
    threads: number;
    seconds: number;
    watchAlso: Readonly<Record<string, number>>;
  },
): Promise<WrkResult> {
  const url = `http://${side.net.inet.addr}:${HTTP_PORT}${BIG_PATH}`;
  const argv = [
    "wrk",
    ...["-t", String(opts.threads), "-c", String(opts.connections), "-d", `${opts.seconds}s`],
    ...["--timeout", `${WRK_TIMEOUT_S}s`, "--latency", "-s", files.wrkScript, url],
  ];
  const { stdout, cpu } = await runGenerator(side, web, "wrk", argv, opts.seconds + 30, opts.watchAlso);
  const j = parseJson(stdout.trim().split("\n").pop() ?? "") as Record<string, number> | null;
  if (!j || typeof j.requests !== "number" || !(j.duration_us > 0))
    throw new Error(`wrk gave no summary: ${oneLine(stdout)}`);
  const secs = j.duration_us / 1e6;
  return {
    reqPerSec: j.requests / secs,
    mbPerSec: j.bytes / secs / 1e6,
    meanMs: j.mean_us / 1000,
    p99Ms: j.p99_us / 1000,
    maxMs: j.max_us / 1000,
    requests: j.requests,
    errors: { connect: j.connect, read: j.read, write: j.write, timeout: j.timeout, status: j.status },
    cpu,
  };
}

/** Failed connections by reason, as bench/c/conn-rate.c counts them. */
export interface ShortFailures {
  refused: number;
  unreachable: number;
  reset: number;
  timeout_connect: number;
  timeout_response: number;
  bad_response: number;
  other: number;
}

export interface ShortResult {
  completed: number;
  /** Completed connections per second over the whole run. */
  perSec: number;
  /** The best one-second count, and the mean of the last ten seconds (a collapse shows there). */
  bestSecond: number;
  lastTenPerSec: number;
  failed: number;
  failures: ShortFailures;
  /** The client's own failures (no local port or memory): the generator's limit, not the path's. */
  local: number;
  /** Still open when the time was up: neither completed nor failed. */
  unfinished: number;
  /** Connections completed before the first failure, and when it came (-1: none failed). */
  firstFailureAfter: number;
  firstFailureAtS: number;
  seconds: number;
  cpu: CpuReport;
}

/** The short-connection client from the first inside host, `concurrency` connections at a time. */
export async function measureShortConns(
  side: Side,
  web: WebServer,
  files: HttpFiles,
  opts: {
    concurrency: number;
    seconds: number;
    timeoutMs: number;
    watchAlso: Readonly<Record<string, number>>;
  },
): Promise<ShortResult> {
  const argv = [
    files.connRate,
    side.net.inet.addr,
    String(HTTP_PORT),
    SMALL_PATH,
    String(opts.concurrency),
    String(opts.seconds),
    String(opts.timeoutMs),
  ];
  const maxSeconds = opts.seconds + opts.timeoutMs / 1000 + 30;
  const { stdout, cpu } = await runGenerator(side, web, "conn-rate", argv, maxSeconds, opts.watchAlso);
  const j = parseJson(stdout) as (ShortFailures & Record<string, number> & { per_second: number[] }) | null;
  if (!j || typeof j.completed !== "number" || !Array.isArray(j.per_second))
    throw new Error(`conn-rate gave no summary: ${oneLine(stdout)}`);
  const failures: ShortFailures = {
    refused: j.refused,
    unreachable: j.unreachable,
    reset: j.reset,
    timeout_connect: j.timeout_connect,
    timeout_response: j.timeout_response,
    bad_response: j.bad_response,
    other: j.other,
  };
  const last = j.per_second.slice(-10);
  return {
    completed: j.completed,
    perSec: j.seconds > 0 ? j.completed / j.seconds : 0,
    bestSecond: Math.max(0, ...j.per_second),
    lastTenPerSec: last.length ? last.reduce((a, b) => a + b, 0) / last.length : 0,
    failed: Object.values(failures).reduce((a, b) => a + b, 0),
    failures,
    local: j.local,
    unfinished: j.unfinished,
    firstFailureAfter: j.first_failure_after,
    firstFailureAtS: j.first_failure_at_s,
    seconds: j.seconds,
    cpu,
  };
}

/** The reasons that occurred: "refused 184, connect timeout 941". */
export function failuresText(f: ShortFailures): string {
  const names: Record<keyof ShortFailures, string> = {
    refused: "refused",
    unreachable: "unreachable",
    reset: "reset",
    timeout_connect: "connect timeout",
    timeout_response: "response timeout",
    bad_response: "bad response",
    other: "other",
  };
  const hits = (Object.keys(names) as (keyof ShortFailures)[]).filter((k) => f[k] > 0);
  return hits.map((k) => `${names[k]} ${f[k]}`).join(", ");
}
