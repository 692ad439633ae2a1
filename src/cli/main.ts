// The masq command line: parses and delegates (run → control/daemon, lab → lab/lab, the rest
// talk to a running daemon over its control socket).
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { controlCall, controlGet, controlStream } from "../control/client.ts";
import { DEFAULT_CONTROL_SOCKET, FILTERINGS, type RunFlags, resolveRunConfig } from "../control/config.ts";
import { ConfigError } from "../control/config-error.ts";
import { type ForwardsReply, formatForwards, formatStats, type StatsReply } from "../control/format.ts";
import type { ReloadReport } from "../control/reload.ts";
import { masqVersion } from "../control/version.ts";
import { formatWhois, parseOutsideEndpoint, parseWhoisTime, type WhoisReply } from "../control/whois.ts";
import { exitCodeOf } from "../errors/codes.ts";
import { errorCode } from "../errors/masq-error.ts";
import type { CleanupFlags } from "./cleanup.ts";
import { formatReload } from "./reload-report.ts";

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function positiveInt(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be a whole number ≥ 0");
  return n;
}

function socketOption(): Option {
  return new Option("--socket <path>", "control socket of the running masq").default(DEFAULT_CONTROL_SOCKET);
}

export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command("masq")
    .description("IP masquerading (one-to-many NAT) for Linux, in user space over a TUN device")
    .version(masqVersion(), "-V, --version")
    .showHelpAfterError()
    .exitOverride();

  program
    .command("run")
    .description("run the gateway: masquerade the inside interfaces' traffic behind the outside one")
    .option("--inside <ifname,...>", "inside (LAN) interface(s); repeat or separate with commas", collect)
    .option("--outside <ifname>", "outside (WAN) interface")
    .option(
      "--address <ip[/len]>",
      "pool mode: a public address masq owns (held by no interface); repeatable. Without it: interface mode, sharing the outside interface's address",
      collect,
    )
    .option(
      "--ports <first-last>",
      "port range masq owns (default: interface mode 61000-65534, pool mode 1-65535)",
    )
    .addOption(new Option("--filtering <policy>", "inbound filtering (RFC 4787)").choices(FILTERINGS))
    .option("--config <file>", "TOML config file (flags override it)")
    .option("--tun <name>", "inside TUN device name (default masq0)")
    .option("--tun-outside <name>", "outside TUN device name (default <tun>-out)")
    .option("--socket <path>", `control socket (default ${DEFAULT_CONTROL_SOCKET})`)
    .option("--no-offload", "do not use IFF_VNET_HDR offloads (one packet per read/write)")
    .option(
      "--rps",
      "turn on Receive Packet Steering on the TUNs: the kernel's work on written packets moves to the other CPUs",
    )
    .option("--no-rps", "leave Receive Packet Steering off on the TUNs (the default)")
    .option(
      "--busy-poll <us>",
      "keep reading this many microseconds after the last packet before sleeping (0: off)",
    )
    .option(
      "--datapath-priority <priority>",
      "the packet loop's scheduling: realtime (SCHED_FIFO, preempts ordinary work as the kernel's forwarding does) or normal",
    )
    .option(
      "--datapath-io <io>",
      "how batches reach the TUN: auto (io_uring where it can be set up), uring (one io_uring_enter per batch) or syscalls (one per packet)",
    )
    .option(
      "--datapath-cpu <cpu>",
      "the CPU the packet loop runs on: auto (the last one; with --rps, RPS on the others), off (unpinned; with --rps, RPS on all), or a number",
    )
    .option(
      "--workers <n>",
      "packet loops, one queue of each TUN and one CPU each: a number or auto (one per CPU); default 1",
    )
    .addOption(
      new Option("--log-level <level>", "log level").choices(["trace", "debug", "info", "warn", "error"]),
    )
    .addOption(new Option("--log-format <format>", "log format").choices(["text", "json"]))
    .option(
      "--metrics <address:port>",
      "serve Prometheus metrics over HTTP at http://<address:port>/metrics (e.g. 127.0.0.1:9753)",
    )
    .option(
      "--web <address:port>",
      "serve the live dashboard at http://<address:port>/ (e.g. 127.0.0.1:8080; beyond loopback [web] token_file is required)",
    )
    .option("--portmap", "answer NAT-PMP and PCP on the inside interfaces (off unless asked for)")
    .option("--upnp", "serve UPnP IGD (SSDP and SOAP) on the inside interfaces (off unless asked for)")
    .option(
      "--mss-clamp <mss>",
      "lower the MSS of SYNs: pmtu (the default: the MTU of the link they leave by − 40), off, or a number of bytes",
    )
    .option(
      "--dry-run",
      "print the host setup masq would apply, each step with its undo, and exit without changing anything",
    )
    .action(async ({ dryRun, ...opts }: RunFlags & { offload: boolean; rps?: boolean; dryRun?: boolean }) => {
      const flags: RunFlags = { ...opts };
      // commander sets the --no-… options true by default; only an explicit flag overrides the file.
      if (opts.offload !== false) delete flags.offload;
      // --rps and --no-rps both exist, so commander leaves rps undefined unless one is given.
      if (opts.rps === undefined) delete flags.rps;
      const cfg = resolveRunConfig(flags);
      if (dryRun) {
        const { runDryRun } = await import("./dry-run.ts");
        setExit(await runDryRun(cfg));
        return;
      }
      const { runDaemon } = await import("../control/daemon.ts");
      // A reload reads the file again with these same flags, which still win over it.
      setExit(await runDaemon(cfg, { reread: () => resolveRunConfig(flags) }));
    });

  program
    .command("stop")
    .description("stop the running masq (as SIGTERM does: its host setup undone) and wait until it is gone")
    .option(
      "--keep-state",
      "keep its connections: the table to a snapshot in state_dir, the host setup and TUNs left in place for the next masq run",
      false,
    )
    .option("--timeout <seconds>", "how long to wait for it to be gone", positiveInt, 30)
    .addOption(socketOption())
    .action(async (opts: { keepState: boolean; timeout: number; socket: string }) => {
      const { runStop } = await import("./stop.ts");
      setExit(await runStop(opts));
    });

  program
    .command("cleanup")
    .description(
      "remove what a masq that is no longer running left on this host: its recorded setup, and rules, routes and TUNs recognisably masq's (refused while a masq runs)",
    )
    .option("--config <file>", "the TOML config file masq ran with (its tun, state_dir, outside, addresses)")
    .option("--tun <name>", "inside TUN device name (default masq0)")
    .option("--tun-outside <name>", "outside TUN device name (default <tun>-out)")
    .option("--outside <ifname>", "pool mode: the outside interface of the pool's proxy ARP entries")
    .option(
      "--address <ip[/len]>",
      "pool mode: a pool address whose proxy ARP entry is masq's; repeatable",
      collect,
    )
    .option("--dry-run", "print what would be removed, change nothing", false)
    .action(async (opts: CleanupFlags) => {
      const { runCleanup } = await import("./cleanup.ts");
      setExit(await runCleanup(opts));
    });

  program
    .command("lab")
    .description("build the classic masquerade network in namespaces, run masq and real programs through it")
    .option("--keep", "leave the lab up for exploring (Ctrl-C tears it down)", false)
    .addOption(
      new Option("--mode <mode>", "address mode").choices(["interface", "pool"]).default("interface"),
    )
    .option(
      "--upnp",
      "also map a port over UPnP IGD from A-box (miniupnpc) and reach it from the Internet host",
      false,
    )
    .addOption(
      new Option(
        "--gateways <n>",
        "2: deterministic NAT on two gateways behind a router's ECMP, and a gateway failing",
      )
        .choices(["1", "2"])
        .default("1"),
    )
    .action(async (opts: { keep: boolean; mode: "interface" | "pool"; upnp: boolean; gateways: string }) => {
      const { runLab } = await import("../lab/lab.ts");
      setExit(
        await runLab({ keep: opts.keep, mode: opts.mode, upnp: opts.upnp, gateways: Number(opts.gateways) }),
      );
    });

  program
    .command("conns")
    .description("list the connection table of the running masq (like conntrack -L), newest activity first")
    .option("--json", "print JSON", false)
    .option("--limit <n>", "show at most n connections (the most recently active)", positiveInt)
    .option("--host <address[/len]>", "only connections whose inside, outside or remote address is in it")
    .option("--proto <protocol>", "only this protocol (tcp, udp, icmp, gre, esp, sctp … or a number)")
    .option("--state <state>", "only connections in this state (established, syn-sent, active …)")
    .addOption(socketOption())
    .action(
      async (opts: {
        json: boolean;
        limit?: number;
        host?: string;
        proto?: string;
        state?: string;
        socket: string;
      }) => {
        const q = new URLSearchParams({ format: opts.json ? "json" : "text" });
        if (opts.limit !== undefined) q.set("limit", String(opts.limit));
        if (opts.host !== undefined) q.set("host", opts.host);
        if (opts.proto !== undefined) q.set("proto", opts.proto);
        if (opts.state !== undefined) q.set("state", opts.state);
        // Streamed straight through: the daemon sends the finished JSON or table, in chunks.
        await controlStream(opts.socket, `/v1/conns?${q}`, process.stdout);
      },
    );

  program
    .command("stats")
    .description("counters of the running masq: events, every drop reason, table use, datapath")
    .option("--json", "print JSON", false)
    .option("--prometheus", "print the Prometheus metrics text", false)
    .addOption(socketOption())
    .action(async (opts: { json: boolean; prometheus: boolean; socket: string }) => {
      if (opts.prometheus) {
        process.stdout.write(String(await controlGet(opts.socket, "/metrics")));
        return;
      }
      const reply = (await controlGet(opts.socket, "/v1/stats")) as StatsReply;
      process.stdout.write(opts.json ? `${JSON.stringify(reply, null, 2)}\n` : formatStats(reply));
    });

  program
    .command("whois")
    .description("which inside host held an outside address:port (now, or --at a time): port blocks")
    .argument("<endpoint>", "outside address:port, e.g. 198.51.100.7:40211")
    .option("--at <time>", "when: ISO 8601 (2026-12-02T14:03:00Z) or ms since the epoch")
    .option("--json", "print JSON", false)
    .addOption(socketOption())
    .action(async (endpoint: string, opts: { at?: string; json: boolean; socket: string }) => {
      const e = parseOutsideEndpoint(endpoint);
      if (typeof e === "string") throw new InvalidArgumentError(e);
      const q = new URLSearchParams({
        address: endpoint.slice(0, endpoint.lastIndexOf(":")),
        port: String(e.port),
      });
      if (opts.at !== undefined) {
        const at = parseWhoisTime(opts.at);
        if (!Number.isFinite(at))
          throw new InvalidArgumentError(
            `--at ${JSON.stringify(opts.at)} must be an ISO 8601 time or ms since the epoch`,
          );
        q.set("at", String(at));
      }
      const reply = (await controlGet(opts.socket, `/v1/whois?${q}`)) as WhoisReply;
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(reply, null, 2)}
`
          : formatWhois(reply),
      );
    });

  program
    .command("status")
    .description(
      "one screen on the running masq: mode, public address, uptime, flows, packets and drops per second",
    )
    .option("--interval <seconds>", "seconds between the two samples the rates come from", "1")
    .addOption(socketOption())
    .action(async (opts: { interval: string; socket: string }) => {
      const seconds = Number(opts.interval);
      if (!(seconds > 0 && seconds <= 60))
        throw new ConfigError("--interval", `${JSON.stringify(opts.interval)} must be 0-60 seconds`);
      const { formatStatus } = await import("./status.ts");
      const first = (await controlGet(opts.socket, "/v1/stats")) as StatsReply;
      const t0 = performance.now();
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      const second = (await controlGet(opts.socket, "/v1/stats")) as StatsReply;
      process.stdout.write(formatStatus(first, second, (performance.now() - t0) / 1000));
    });

  program
    .command("reload")
    .description(
      "re-read the config file of the running masq and apply what changed without a restart (also SIGHUP); a setting only a restart can change refuses the whole reload",
    )
    .option("--check", "validate the file and say what a reload would change, without applying it", false)
    .addOption(socketOption())
    .action(async (opts: { check: boolean; socket: string }) => {
      const r = (await controlCall(
        opts.socket,
        "POST",
        "/v1/reload",
        { check: opts.check },
        60_000,
      )) as ReloadReport;
      process.stdout.write(formatReload(r));
    });

  const forward = program
    .command("forward")
    .description(
      "port forwards of the running masq: outside [address:]port[-port]/proto -> inside host[:port]",
    );
  forward
    .command("add")
    .description("forward an outside port (range) to an inside host; kept across restarts of masq")
    .argument("<outside>", 'e.g. "8080/tcp", "5000-5010/udp", "198.51.100.2:8080/tcp"')
    .argument("<inside>", 'e.g. "192.168.0.2:80" (the port defaults to the outside one)')
    .option("--remote <address>", "admit only this remote address")
    .option("--note <text>", "a note shown by forward list")
    .addOption(socketOption())
    .action(
      async (outside: string, inside: string, opts: { remote?: string; note?: string; socket: string }) => {
        const body = {
          outside,
          inside,
          ...(opts.remote ? { remote: opts.remote } : {}),
          ...(opts.note ? { note: opts.note } : {}),
        };
        const f = (await controlCall(opts.socket, "POST", "/v1/forwards", body)) as {
          id: number;
          text: string;
        };
        process.stdout.write(`forward ${f.id} added: ${f.text}\n`);
      },
    );
  forward
    .command("del")
    .description("remove a forward, by its id or its outside text")
    .argument("<forward>", 'an id from forward list, or e.g. "8080/tcp"')
    .addOption(socketOption())
    .action(async (key: string, opts: { socket: string }) => {
      const r = (await controlCall(opts.socket, "DELETE", `/v1/forwards/${encodeURIComponent(key)}`)) as {
        removed: number;
        outside: string;
        inside: string;
      };
      process.stdout.write(`forward ${r.removed} removed: ${r.outside} ${r.inside}\n`);
    });
  forward
    .command("list")
    .description("list the forwards and every pinned mapping (forwards, NAT-PMP/PCP, ALG) with its origin")
    .option("--json", "print JSON", false)
    .addOption(socketOption())
    .action(async (opts: { json: boolean; socket: string }) => {
      const reply = (await controlGet(opts.socket, "/v1/forwards")) as ForwardsReply;
      process.stdout.write(opts.json ? `${JSON.stringify(reply, null, 2)}\n` : formatForwards(reply));
    });

  program
    .command("replay")
    .description(
      "translate a capture offline: run every packet of <in.pcap> through the engine (pool mode, capture timestamps as the clock) and write what masq would send to <out.pcap>",
    )
    .argument("<in.pcap>", "input: what the TUN would deliver (raw IP, Ethernet or Linux cooked pcap)")
    .argument("<out.pcap>", "output: the translated packets (raw IP pcap)")
    .option("--inside <prefix,...>", "inside network(s) (default the RFC 1918 ranges); repeatable", collect)
    .option("--address <ip[/len]>", "public pool address(es) (default 198.51.100.100); repeatable", collect)
    .option("--ports <first-last>", "port range masq owns (default 1-65535, as pool mode)")
    .addOption(new Option("--filtering <policy>", "inbound filtering (RFC 4787)").choices(FILTERINGS))
    .option("--port-seed <n>", "the live run's port seed (masq stats --json: portSeed), to get its ports")
    .option("--json", "print the summary as JSON", false)
    .action(
      async (
        inPath: string,
        outPath: string,
        opts: {
          inside?: string[];
          address?: string[];
          ports?: string;
          filtering?: string;
          portSeed?: string;
          json: boolean;
        },
      ) => {
        const { runReplay } = await import("./replay.ts");
        setExit(await runReplay(inPath, outPath, opts));
      },
    );

  return program;
}

/** Runs the CLI; resolves with the exit code. Errors are printed as one clear line. */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv, { from: "user" });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // The message for people, the exit code from the error's code (errors/codes.ts).
    const what = err instanceof ConfigError ? "configuration error: " : "";
    process.stderr.write(`masq: ${what}${err instanceof Error ? err.message : String(err)}\n`);
    return exitCodeOf(errorCode(err));
  }
}
