// `masq run`: checks the host, opens the TUNs, installs the routes/rules/sysctls (recorded, so
// exactly those are removed at exit or after a crash), runs the datapath and the control API,
// and tears everything down on SIGINT/SIGTERM.

import { existsSync, renameSync } from "node:fs";
import { basename, join } from "node:path";
import { performance } from "node:perf_hooks";
import { AlgRegistry } from "../alg/registry.ts";
import { placeDatapath } from "../datapath/cpu-placement.ts";
import { Datapath } from "../datapath/datapath.ts";
import { rpsMaskFor, sumCounters, TunPair } from "../datapath/tuns.ts";
import {
  applyHostSetup,
  applyRecordedStep,
  assertInterface,
  assertNoEphemeralOverlap,
  assertRoot,
  cleanLeftovers,
  currentNetnsName,
  defaultStateFile,
  expandPrefix,
  forwardRuleSteps,
  interfaceAddress,
  interfaceIpv4Addresses,
  interfaceMtu,
  interfacePrefixes,
  parsePrefix,
  readRpFilterState,
  removeOrphanStateFiles,
  sysfsIsOurs,
  undoHostSetup,
  undoRecordedStep,
} from "../host/index.ts";
import { loadAddon } from "../io/addon.ts";
import { hugePageAllocator } from "../io/huge-pages.ts";
import { NatEngine } from "../nat/engine.ts";
import { parseIpv4 } from "../packet/addr.ts";
import {
  ForwardError,
  ForwardRegistry,
  type ForwardText,
  forwardText,
  parseForward,
  type Steering,
} from "../portmap/forwards.ts";
import { NeighbourSources } from "../portmap/neighbours.ts";
import { interfaceAddresses, PortmapServer } from "../portmap/server.ts";
import { forwardTargetProblem, startProblem, toPrefix } from "./address-rules.ts";
import { ConfigError, type RunConfig } from "./config.ts";
import { connsBody } from "./conns-listing.ts";
import { engineConfigFor, type Resolved } from "./engine-config.ts";
import type { StatsReply } from "./format.ts";
import { planRunHost } from "./host-plan.ts";
import { createLogger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { isLoopback, MetricsListener, parseListen } from "./metrics-http.ts";
import { ControlError, ControlServer, type ControlSource } from "./server.ts";

/** Pool addresses beyond this need a routed prefix upstream, not one proxy-ARP entry each. */
const MAX_POOL_ADDRESSES = 256;

/** Reads what the host says (interfaces, addresses, ephemeral range) and checks it. */
export async function resolveHost(cfg: RunConfig): Promise<Resolved> {
  for (const i of cfg.inside) await assertInterface(i, "inside");
  await assertInterface(cfg.outside, "outside");
  const mode = cfg.addresses.length > 0 ? "pool" : "interface";
  let publicAddresses: string[];
  if (mode === "pool") {
    publicAddresses = cfg.addresses.flatMap((a) => expandPrefix(parsePrefix(a)));
    if (publicAddresses.length > MAX_POOL_ADDRESSES)
      throw new Error(
        `--address: ${publicAddresses.length} addresses; at most ${MAX_POOL_ADDRESSES} are supported`,
      );
  } else {
    const own = await interfaceAddress(cfg.outside);
    if (!own)
      throw new Error(
        `outside interface ${cfg.outside} has no IPv4 address: give one to it, or name masq's own with --address`,
      );
    publicAddresses = [own];
    // One address shared with the kernel: its own connections must never pick masq's ports.
    await assertNoEphemeralOverlap(cfg.ports);
  }
  let insideNetworks = cfg.insideNetworks;
  if (insideNetworks.length === 0) {
    insideNetworks = (await Promise.all(cfg.inside.map((i) => interfacePrefixes(i)))).flat();
    if (insideNetworks.length === 0)
      throw new Error(
        `inside interface(s) ${cfg.inside.join(", ")} have no IPv4 address: give them one, or set inside_networks in the config`,
      );
  }
  const mtus = await Promise.all([...cfg.inside, cfg.outside].map((i) => interfaceMtu(i)));
  const mtu = Math.max(576, ...mtus.filter((m): m is number => m !== undefined));
  // The config's addresses against the host's: refused before anything on the host is touched.
  const gatewayAddresses = (
    await Promise.all([...cfg.inside, cfg.outside].map((i) => interfaceIpv4Addresses(i)))
  ).flat();
  const outsideNetworks = await interfacePrefixes(cfg.outside);
  const bad = startProblem(cfg, { mode, insideNetworks, publicAddresses, outsideNetworks, gatewayAddresses });
  if (bad) throw new ConfigError(bad.key, bad.problem);
  return { mode, publicAddresses, insideNetworks, mtu, gatewayAddresses };
}

/** Runs until SIGINT/SIGTERM; resolves with the process exit code. */
export async function runDaemon(cfg: RunConfig): Promise<number> {
  const log = createLogger(cfg.log);
  assertRoot();
  const host = await resolveHost(cfg);
  // Huge pages for the flow tables: fewer TLB misses per packet with a large table.
  const engine = new NatEngine(engineConfigFor(cfg, host), hugePageAllocator());
  const algs = new AlgRegistry(engine, engine.config.alg, host.mtu);
  engine.attachAlg(algs);
  const netns = currentNetnsName();
  const stateFile = defaultStateFile(cfg.tun, { dir: cfg.stateDir, ...(netns ? { netns } : {}) });
  const orphans = removeOrphanStateFiles(cfg.stateDir);
  if (orphans.length > 0) log.info({ files: orphans }, "removed state files of namespaces that are gone");
  // The record of a crashed run, and what is masq's on the host that no record covers (a record
  // lost or corrupt): removed before anything new is set up.
  await cleanLeftovers(stateFile, {
    log,
    footprint: {
      tuns: [cfg.tun, cfg.tunOutside],
      outside: cfg.outside,
      ...(host.mode === "pool" ? { pool: host.publicAddresses } : {}),
    },
  });

  // Before anything is touched: a CPU this process may not use is a configuration error.
  const placement = placeDatapath(cfg.datapathCpu, loadAddon().allowedCpus(), cfg.rps);
  let tuns: TunPair | undefined;
  let rpsCpus: string | undefined;
  let sysfsOurs = false;
  let server: ControlServer | undefined;
  let datapath: Datapath | undefined;
  let portmap: PortmapServer | undefined;
  let metricsListener: MetricsListener | undefined;
  let hostApplied = false;
  const teardown = async (why: string) => {
    await portmap?.close();
    datapath?.stop();
    // Rules first (undo runs newest first), so nothing is steered into a TUN that is closing.
    if (hostApplied) {
      const report = await undoHostSetup(stateFile, { log });
      if (report.failed.length > 0)
        log.error({ failed: report.failed }, "some host setup could not be undone");
      hostApplied = false;
    }
    tuns?.close();
    await server?.close();
    await metricsListener?.close();
    log.info({ why }, "masq stopped");
  };

  try {
    tuns = await TunPair.open({ inside: cfg.tun, outside: cfg.tunOutside }, cfg.offload);
    sysfsOurs = await sysfsIsOurs();
    const rps = rpsMaskFor(placement.rpsCpus, [cfg.tun, cfg.tunOutside], sysfsOurs);
    if (typeof rps === "object")
      log.warn({ tuns: [cfg.tun, cfg.tunOutside] }, `RPS left off: ${rps.skipped}`);
    else rpsCpus = rps;
    const plan = planRunHost(cfg, host, {
      disableTunIpv6: existsSync(`/proc/sys/net/ipv6/conf/${cfg.tun}`),
      rpFilter: await readRpFilterState(),
      rpsCpus,
    });
    hostApplied = true;
    await applyHostSetup(plan, stateFile, { log });
    datapath = new Datapath(engine, tuns.ports());
    if (placement.datapathCpu !== undefined) loadAddon().pinThread(placement.datapathCpu);
    loadAddon().setBusyPoll(cfg.busyPollUs);
    datapath.start();
    const forwards = await startForwards(cfg, host, engine, stateFile, log);
    const started = performance.now();
    const dp = datapath;
    const devices = tuns;
    const datapathCounters = () => ({ ...dp.stats });
    const sysfs = sysfsOurs;
    const metrics = createMetrics({
      engine: () => engine.stats(),
      datapath: datapathCounters,
      devices: () => devices.counters(sysfs),
      firewall: () => engine.firewall?.list() ?? [],
      portmap: () => portmap?.stats(),
    });
    if (cfg.metrics.listen !== undefined) {
      const listen = parseListen(cfg.metrics.listen);
      metricsListener = await MetricsListener.start(listen, metrics);
      const url = `http://${cfg.metrics.listen}/metrics`;
      if (isLoopback(listen.host)) log.info({ url }, "Prometheus metrics served");
      else
        log.warn(
          { url },
          "Prometheus metrics served beyond loopback: anyone who reaches this address sees the gateway's traffic counters",
        );
    }
    server = await ControlServer.start(cfg.controlSocket, {
      health: () => ({
        ok: true,
        pid: process.pid,
        uptimeSec: Math.round((performance.now() - started) / 1000),
      }),
      conns: (query) => connsBody(engine, query),
      stats: (): StatsReply => ({
        uptimeSec: Math.round((performance.now() - started) / 1000),
        mode: host.mode,
        publicAddresses: host.publicAddresses,
        portSeed: engine.config.portSeed,
        ...(placement.datapathCpu !== undefined ? { datapathCpu: placement.datapathCpu } : {}),
        engine: engine.stats(),
        datapath: datapathCounters(),
        ...deviceStats(devices.counters(sysfs)),
        firewall: engine.firewall?.list() ?? [],
        ...(portmap ? { portmap: portmap.stats() } : {}),
        ...(server ? { control: { ...server.streamStats } } : {}),
      }),
      metrics: async () => ({ contentType: metrics.contentType, body: await metrics.metrics() }),
      forwards: forwardsApi(forwards, engine),
    });
    if (cfg.portmap.enabled && (cfg.portmap.natpmp || cfg.portmap.pcp)) {
      const listen = interfaceAddresses(cfg.inside);
      if (listen.length === 0)
        throw new Error(
          `portmap: inside interface(s) ${cfg.inside.join(", ")} have no IPv4 address to listen on`,
        );
      // Requests only from hosts the gateway sees on the inside (issue 16: forged sources).
      const sources = cfg.portmap.requireNeighbour
        ? new NeighbourSources({
            allowed: cfg.portmap.allowedHosts,
            onError: (err) => log.warn({ err }, "portmap: the neighbour table cannot be read"),
          })
        : undefined;
      portmap = await PortmapServer.start({
        engine,
        config: cfg.portmap,
        insideNetworks: engine.config.inside,
        ...(sources ? { sources } : {}),
        listen,
        openSocket: (address, port, device) => loadAddon().udpSocketOnDevice(address, port, device),
        log,
      });
    }
  } catch (err) {
    // Undo what was applied, whatever failed (applyHostSetup already rolls itself back).
    hostApplied = hostApplied && existsSync(stateFile);
    await teardown("start failed");
    throw err;
  }

  printSummary(cfg, host, engine, tuns.inside.headerBytes > 0, rpsCpus, placement.datapathCpu);
  log.info(
    {
      mode: host.mode,
      public: host.publicAddresses,
      inside: cfg.inside,
      outside: cfg.outside,
      tuns: { inside: cfg.tun, outside: cfg.tunOutside },
      offload: tuns.inside.headerBytes > 0,
      rpsCpus: rpsCpus ?? "off",
      datapathCpu: placement.datapathCpu ?? "any",
      socket: cfg.controlSocket,
      alg: algs.describe(),
    },
    "masq ready",
  );

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      // Listening for every signal, not once: a second Ctrl-C (or the SIGTERM a supervisor sends
      // after the terminal's SIGINT) must not kill masq halfway through its undo, which would
      // leave its rules, state file and socket behind.
      if (stopping) {
        log.info({ signal }, "already stopping");
        return;
      }
      stopping = true;
      teardown(signal).then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, "teardown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    // A bug must not leave the host steered into a TUN nobody reads: undo, then exit non-zero.
    process.once("uncaughtException", (err) => {
      log.fatal({ err }, "uncaught exception");
      teardown("uncaught exception").finally(() => resolve(1));
    });
  });
}

/** The stats reply's device counters: both TUNs added up, and each one by name. */
function deviceStats(
  perDevice: Record<string, Record<string, number>>,
): Pick<StatsReply, "device" | "devices"> {
  return { device: sumCounters(perDevice), devices: perDevice };
}

function printSummary(
  cfg: RunConfig,
  host: Resolved,
  engine: NatEngine,
  offloads: boolean,
  rpsCpus: string | undefined,
  datapathCpu: number | undefined,
): void {
  const mb = (engine.memoryBytes() / 1048576).toFixed(1);
  const lines = [
    "",
    `masq: ${cfg.inside.join(", ")} ⇒ ${cfg.outside}, ${host.mode} mode, public ${host.publicAddresses.join(", ")}`,
    `      inside networks ${host.insideNetworks.join(", ")}; ports ${cfg.ports.first}-${cfg.ports.last}; filtering ${cfg.filtering}`,
    `      TUNs ${cfg.tun} (inside) and ${cfg.tunOutside} (outside) (mtu ${host.mtu}${offloads ? ", offloads on" : ""}${rpsCpus ? `, RPS on CPUs ${rpsCpus}` : ""}); packet loop on ${datapathCpu === undefined ? "any CPU" : `CPU ${datapathCpu}`}; up to ${cfg.limits.maxFlows} flows (${mb} MiB)`,
    `      control socket ${cfg.controlSocket}: masq conns / masq stats --socket ${cfg.controlSocket}`,
    "",
  ];
  process.stderr.write(lines.join("\n"));
}

/**
 * The forwards of the config file, then those added at runtime before a restart (state file);
 * in interface mode each TCP forward outside masq's own port range gets its policy rule,
 * recorded with the host setup so exit and crash cleanup remove it.
 */
async function startForwards(
  cfg: RunConfig,
  host: Resolved,
  engine: NatEngine,
  hostStateFile: string,
  log: ReturnType<typeof createLogger>,
): Promise<ForwardRegistry> {
  const steps = (proto: "tcp" | "udp", first: number, last: number) =>
    forwardRuleSteps({
      proto,
      first,
      last,
      outside: cfg.outside,
      inside: cfg.inside,
      publicAddress: host.publicAddresses[0],
      ports: cfg.ports,
    });
  const steer: Steering | undefined =
    host.mode === "interface"
      ? {
          add: async (proto, first, last) => {
            const done: string[] = [];
            try {
              for (const step of steps(proto, first, last)) {
                await applyRecordedStep(step, hostStateFile, { log });
                done.push(step.what);
              }
            } catch (err) {
              for (const what of done.reverse()) await undoRecordedStep(what, hostStateFile, { log });
              throw err;
            }
          },
          remove: async (proto, first, last) => {
            for (const step of steps(proto, first, last).reverse())
              await undoRecordedStep(step.what, hostStateFile, { log });
          },
        }
      : undefined;
  const inside = host.insideNetworks.map((n) => toPrefix(n)!);
  const gateway = [...(host.gatewayAddresses ?? []), ...host.publicAddresses].map((a) => parseIpv4(a)!);
  const registry = new ForwardRegistry({
    engine,
    publicAddresses: host.publicAddresses.map((a) => parseIpv4(a)!),
    stateFile: forwardsStateFile(cfg, hostStateFile, log),
    refuseTarget: (addr) => forwardTargetProblem(addr, inside, gateway),
    ...(steer ? { steer } : {}),
  });
  for (const spec of cfg.forwards) {
    const f = await registry.add(spec, "config");
    log.info({ forward: forwardText(f.spec) }, "forward from the config");
  }
  for (const { forward, error } of await registry.restore())
    log.warn(
      { forward, error },
      forward
        ? "a forward added before the restart could not be restored"
        : `forwards added before the restart were not restored: ${error}`,
    );
  const restored = registry.list().filter((f) => f.source === "runtime");
  if (restored.length > 0)
    log.info({ forwards: restored.map((f) => forwardText(f.spec)) }, "forwards restored from the state file");
  return registry;
}

/**
 * Where the runtime forwards are kept: named like the host state file (TUN, namespace name and
 * inode), so a masq in another namespace with the same TUN name never loads them, and they go
 * with the namespace's other state files when it is gone. A file of the old name (TUN only) is
 * taken over only in an unnamed namespace (a real gateway's own), where it can only be this one's.
 */
function forwardsStateFile(
  cfg: RunConfig,
  hostStateFile: string,
  log: ReturnType<typeof createLogger>,
): string {
  const file = join(cfg.stateDir, `forwards-${basename(hostStateFile)}`);
  const legacy = join(cfg.stateDir, `forwards-${cfg.tun}.json`);
  if (currentNetnsName() === undefined && existsSync(legacy) && !existsSync(file)) {
    renameSync(legacy, file);
    log.info({ from: legacy, to: file }, "runtime forwards file renamed to its namespace's name");
  }
  return file;
}

/** The control socket's view of the forwards (masq forward add|del|list). */
export function forwardsApi(
  registry: ForwardRegistry,
  engine: NatEngine,
): NonNullable<ControlSource["forwards"]> {
  const refuse = (err: unknown): never => {
    if (err instanceof ForwardError) throw new ControlError(400, err.message);
    throw err;
  };
  return {
    list: () => {
      const pins = engine.pinList();
      return {
        forwards: registry.views(pins),
        pins,
        ...(registry.stateFile ? { stateFile: registry.stateFile } : {}),
      };
    },
    add: async (body) => {
      const b = body as Partial<ForwardText> | null;
      if (
        typeof b !== "object" ||
        b === null ||
        typeof b.outside !== "string" ||
        typeof b.inside !== "string"
      )
        throw new ControlError(400, 'body must be {"outside": "8080/tcp", "inside": "192.168.0.2:80"}');
      const t: ForwardText = { outside: b.outside, inside: b.inside };
      if (typeof b.remote === "string") t.remote = b.remote;
      if (typeof b.note === "string") t.note = b.note;
      try {
        const f = await registry.add(parseForward(t), "runtime");
        return registry.views().find((v) => v.id === f.id) ?? {};
      } catch (err) {
        return refuse(err);
      }
    },
    remove: async (key) => {
      try {
        const f = await registry.remove(key);
        return { removed: f.id, ...forwardText(f.spec) };
      } catch (err) {
        return refuse(err);
      }
    },
  };
}
