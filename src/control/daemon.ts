// `masq run`: checks the host, opens the TUNs, installs the routes/rules/sysctls (recorded, so
// exactly those are removed at exit or after a crash), runs the datapath and the control API,
// and tears everything down on SIGINT/SIGTERM. This is the wiring; what the host says is read in
// host-resolution.ts, the forwards start in forward-steering.ts, the API is api-handlers.ts.

import { existsSync, rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { AlgRegistry } from "../alg/registry.ts";
import { applyDatapathPriority, placeDatapath } from "../datapath/cpu-placement.ts";
import { Datapath } from "../datapath/datapath.ts";
import { ShardedIp6 } from "../datapath/shard-ip6.ts";
import { rpsMaskFor, TunPair, waitForDevicesGone } from "../datapath/tuns.ts";
import type { WorkerPool } from "../datapath/worker-pool.ts";
import {
  applyHostSetup,
  assertRoot,
  cleanLeftovers,
  currentNetnsName,
  defaultStateFile,
  readRpFilterState,
  removeOrphanStateFiles,
  sysfsIsOurs,
  undoHostSetup,
} from "../host/index.ts";
import { loadAddon } from "../io/addon.ts";
import { hugePageAllocator } from "../io/huge-pages.ts";
import type { Pcp6Server } from "../ipv6fw/pcp6-server.ts";
import { NatEngine } from "../nat/engine.ts";
import type { NatLogExporter } from "../natlog/exporter.ts";
import { startNatLog } from "../natlog/start.ts";
import type { PortmapLeases } from "../portmap/leases.ts";
import type { MappedPortSteering } from "../portmap/port-steering.ts";
import type { PortmapServer } from "../portmap/server.ts";
import type { UpnpServer } from "../portmap/upnp/server.ts";
import { onWanTransition } from "./address-change.ts";
import { controlApi } from "./api-handlers.ts";
import { scaleOutOf } from "./cgnat-config.ts";
import type { RunConfig } from "./config.ts";
import { checkDatapathIo, datapathIoSummary } from "./datapath-config.ts";
import { engineConfigFor } from "./engine-config.ts";
import { startForwards } from "./forward-steering.ts";
import { planRunHost } from "./host-plan.ts";
import { resolveHost } from "./host-resolution.ts";
import { ipv6Filter, ipv6PinViews, startIpv6Pcp } from "./ipv6-config.ts";
import { configHash, snapshotFileFor } from "./keep-state.ts";
import { createLogger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { type MetricsListener, serveMetrics } from "./metrics-http.ts";
import { startPortMapping } from "./portmap-start.ts";
import { engineLive, Reloader } from "./reload.ts";
import {
  adoptAtStart,
  keptStateAtStart,
  leaseOriginsOf,
  leasesAtStart,
  restoreAtStart,
  snapshotAndLeave,
} from "./restart.ts";
import { ControlServer } from "./server.ts";
import { printSummary, printWorkersSummary } from "./start-summary.ts";
import { followWanAddress, type WanFollower } from "./wan-follow.ts";
import type { WebServer } from "./web/server.ts";
import { startDashboard } from "./web/start.ts";
import { whoisAnswer } from "./whois.ts";
import { endWorkersNatLog, startWorkersNatLog } from "./worker-natlog.ts";
import { workersReloader } from "./worker-reload.ts";
import { startWorkerPool, startWorkersControl } from "./worker-run.ts";

/** How long a stop waits for the closed TUNs to leave the kernel (see waitForDevicesGone). */
const TUN_GONE_TIMEOUT_MS = 3000;

/** What a running masq needs beyond its configuration. */
export interface DaemonOptions {
  /** Reads the config file again with the flags of the start (`masq reload`, SIGHUP). */
  reread?: () => RunConfig;
}

/** Runs until SIGINT/SIGTERM; resolves with the process exit code. */
export async function runDaemon(cfg: RunConfig, opts: DaemonOptions = {}): Promise<number> {
  const log = createLogger(cfg.log);
  let reloader: Reloader | undefined;
  // From the first moment: SIGHUP's default action would kill masq with its host setup in place.
  process.on("SIGHUP", () => {
    if (reloader === undefined) log.warn("SIGHUP while masq is starting: no reload");
    else reloader.reload().catch(() => undefined); // counted and logged by the reloader
  });
  assertRoot();
  const host = await resolveHost(cfg);
  const netns = currentNetnsName();
  const stateFile = defaultStateFile(cfg.tun, { dir: cfg.stateDir, ...(netns ? { netns } : {}) });
  // `masq stop --keep-state` left a snapshot (restart.ts): taken up when it fits this run.
  const engineCfg = engineConfigFor(cfg, host);
  const layoutHash = configHash(cfg, engineCfg);
  const snapshotFile = snapshotFileFor(stateFile);
  // Several workers keep no state across a restart yet: a snapshot is not taken up.
  const wantWorkers = cfg.workers > 1;
  if (wantWorkers && existsSync(snapshotFile)) {
    log.warn(
      { snapshot: snapshotFile },
      "a kept state is not taken up with several workers (not yet): starting empty",
    );
    rmSync(snapshotFile, { force: true });
  }
  const kept = wantWorkers
    ? undefined
    : await keptStateAtStart(snapshotFile, stateFile, layoutHash, [cfg.tun, cfg.tunOutside], log);
  // One engine on this thread, unless the workers start (each with its own shard).
  const makeSingle = () => {
    // Huge pages for the flow tables: fewer TLB misses per packet with a large table.
    const engine = new NatEngine(
      kept ? { ...engineCfg, portSeed: kept.header.portSeed } : engineCfg,
      hugePageAllocator(),
    );
    const algs = new AlgRegistry(engine, cfg.alg, host.mtu);
    engine.attachAlg(algs);
    return { engine, algs };
  };
  let single = wantWorkers ? undefined : makeSingle();
  // Before the restore: the IPv6 filter's table is part of the kept state.
  const ip6 = ipv6Filter(cfg);
  const offsetMs =
    kept && single
      ? restoreAtStart(
          snapshotFile,
          kept,
          single.engine,
          single.algs,
          () => performance.now(),
          log,
          ip6,
          leaseOriginsOf(cfg),
        )
      : undefined;
  const restored = offsetMs !== undefined;
  // The engine's clock: this process's, moved on from the stopped masq's when its state was kept.
  const clockOffset = offsetMs ?? 0;
  const clock = () => performance.now() + clockOffset;
  const openDeviceSocket = (address: string, port: number, device: string) =>
    loadAddon().udpSocketOnDevice(address, port, device);
  const orphans = removeOrphanStateFiles(cfg.stateDir);
  if (orphans.length > 0) log.info({ files: orphans }, "removed state files of namespaces that are gone");
  // The record of a crashed run, and what is masq's on the host that no record covers (a record
  // lost or corrupt): removed before anything new is set up. After a stop that kept the state,
  // the setup is this run's to take over instead.
  if (restored) await adoptAtStart(stateFile, log);
  else
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
  let upnp: UpnpServer | undefined;
  let pcp6: Pcp6Server | undefined;
  let metricsListener: MetricsListener | undefined;
  let web: WebServer | undefined;
  let follower: WanFollower | undefined;
  let natLog: NatLogExporter | undefined;
  let steering: MappedPortSteering | undefined;
  let pool: WorkerPool | undefined;
  /** Why several workers were asked for but one queue runs (said in the summary). */
  let workersFallback: string | undefined;
  let leases: PortmapLeases | undefined;
  let hostApplied = false;
  /** Set by `masq stop` (the control API): the stop, keeping the state or not. */
  let requestStop: ((keepState: boolean) => void) | undefined;
  const teardown = async (why: string, keepState = false) => {
    // No reload may add forwards' rules while the host setup is undone.
    await reloader?.close();
    // No address change may run while the rest is torn down.
    follower?.close();
    await follower?.idle();
    await portmap?.close();
    await upnp?.close(keepState); // its mappings go into the snapshot
    await pcp6?.close();
    datapath?.stop();
    let stateKept = false;
    if (keepState && tuns && hostApplied && single) {
      try {
        const w = snapshotAndLeave(snapshotFile, single.engine, single.algs, tuns, {
          // From the configuration as it is now: a reload may have changed the firewall or the
          // limits since the start, and the next run starts from the file as it is now.
          configHash: configHash(cfg, engineConfigFor(cfg, host)),
          clockMs: clock(),
          ip6,
          leases: leases && { grants: leases.live(), epochMs: portmap?.service.epochMs() },
        });
        log.info(
          { snapshot: w.file, bytes: w.bytes, ms: w.ms, flows: w.flows },
          "state kept: the host setup and the TUNs stay for the next masq run (packets wait or drop meanwhile)",
        );
        hostApplied = false;
        tuns = undefined;
        stateKept = true;
      } catch (err) {
        log.error({ err }, "the state could not be kept: stopping as usual, undoing the host setup");
      }
    }
    // The table ends here (unless it was kept): every mapping the log announced ends in it too,
    // stamped now. Then what the engine recorded goes out before the senders close.
    if (natLog && single && !stateKept) {
      const exporter = natLog;
      single.engine.tick(clock());
      const ended = single.engine.logEndOfTable(() => exporter.drain());
      log.info(ended, "NAT log: every mapping, pin and port block ended with the table");
    }
    if (natLog && pool && !stateKept) await endWorkersNatLog(pool, natLog, log);
    natLog?.close();
    // Rules first (undo runs newest first), so nothing is steered into a TUN that is closing.
    if (hostApplied) {
      const report = await undoHostSetup(stateFile, { log });
      if (report.failed.length > 0)
        log.error({ failed: report.failed }, "some host setup could not be undone");
      hostApplied = false;
    }
    // Opened by this run and not kept (a kept state cleared `tuns`): they must be gone at the stop.
    const tunsToGo = tuns !== undefined || pool !== undefined;
    tuns?.close();
    await pool?.stop();
    if (tunsToGo) {
      const left = await waitForDevicesGone([cfg.tun, cfg.tunOutside], TUN_GONE_TIMEOUT_MS);
      if (left.length > 0) log.warn({ tuns: left }, "the TUNs are still there after masq closed them");
    }
    await server?.close();
    await metricsListener?.close();
    await web?.close();
    log.info({ why }, "masq stopped");
  };

  /** Resolves with the exit code once a signal, `masq stop` or a fault has stopped masq. */
  const waitForStop = () =>
    new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (signal: string, keepState = false) => {
        // Listening for every signal, not once: a second Ctrl-C (or the SIGTERM a supervisor sends
        // after the terminal's SIGINT) must not kill masq halfway through its undo, which would
        // leave its rules, state file and socket behind.
        if (stopping) {
          log.info({ signal }, "already stopping");
          return;
        }
        stopping = true;
        teardown(signal, keepState).then(
          () => resolve(0),
          (err: unknown) => {
            log.error({ err }, "teardown failed");
            resolve(1);
          },
        );
      };
      requestStop = (keepState) => stop(keepState ? "masq stop --keep-state" : "masq stop", keepState);
      process.on("SIGINT", () => stop("SIGINT"));
      process.on("SIGTERM", () => stop("SIGTERM"));
      // A bug must not leave the host steered into a TUN nobody reads: undo, then exit non-zero.
      process.once("uncaughtException", (err) => {
        log.fatal({ err }, "uncaught exception");
        teardown("uncaught exception").finally(() => resolve(1));
      });
      // A worker that ends on its own leaves its hosts untranslated: undo, then exit non-zero.
      workerFailed = (why) => {
        if (stopping) return;
        stopping = true;
        log.fatal({ why }, "a worker stopped");
        teardown(why).finally(() => resolve(1));
      };
    });
  /** The run's host setup (routes, rules, sysctls), recorded in the state file as it is applied. */
  const applyRunHost = async (rpsCpus: string | undefined) =>
    applyHostSetup(
      planRunHost(cfg, host, {
        disableTunIpv6: existsSync(`/proc/sys/net/ipv6/conf/${cfg.tun}`),
        rpFilter: await readRpFilterState(),
        rpsCpus,
      }),
      stateFile,
      { log },
    );
  /** Set while masq runs with several workers: a worker's end stops masq. */
  let workerFailed: ((why: string) => void) | undefined;

  try {
    if (wantWorkers) {
      const started = await startWorkerPool(cfg, host, engineCfg, placement.datapathCpu !== undefined, log);
      if (typeof started === "string") workersFallback = started;
      else pool = started;
    }
    if (pool) {
      const running = pool;
      sysfsOurs = await sysfsIsOurs();
      hostApplied = true;
      // Each worker's CPU does the kernel's work on what it writes: no RPS.
      await applyRunHost(undefined);
      natLog = startWorkersNatLog(cfg, running, log);
      // The IPv6 firewall: each worker filters its own hosts' IPv6 (shard-ip6.ts).
      const ip6Shards = cfg.ipv6.firewall ? new ShardedIp6(running.shards) : undefined;
      const forwards = await startForwards(cfg, host, running.engine, stateFile, log);
      reloader = workersReloader(cfg, opts.reread, running, forwards, log);
      const started = await startWorkersControl({
        cfg,
        host,
        pool: running,
        sysfs: sysfsOurs,
        stateFile,
        log,
        stop: (keepState: boolean) => requestStop?.(keepState),
        streams: () => server?.streamStats,
        reloader,
        natLog: () => natLog?.counters(),
        forwards,
        portmap: () => portmap,
        upnp: () => upnp,
        leases: () => leases,
        mappedPorts: () => steering?.steered() ?? [],
        ...(ip6Shards
          ? {
              ipv6: () => ({ ...ip6Shards.counters(), ...pcp6?.service.stats() }),
              ipv6Pins: () => ipv6PinViews(cfg.ipv6, pcp6),
            }
          : {}),
      });
      server = started.server;
      metricsListener = started.metricsListener;
      follower = started.follower;
      web = await startDashboard(cfg.web, { engine: running.engine, api: started.api }, log);
      ({ portmap, upnp, leases, steering } = await startPortMapping(cfg, host, running.engine, {
        stateFile,
        forwards,
        log,
      }));
      pcp6 = await startIpv6Pcp(cfg.ipv6, cfg.inside, ip6Shards, clock, openDeviceSocket, log);
      running.watch((why: string) => workerFailed?.(why));
      printWorkersSummary(cfg, host, running);
      log.info(
        {
          mode: host.mode,
          public: host.publicAddresses,
          workers: running.count,
          priorities: running.priorities(),
          datapathIo: running.io(),
          socket: cfg.controlSocket,
        },
        "masq ready",
      );
      return await waitForStop();
    }
    single ??= makeSingle();
    const { engine, algs } = single;
    tuns = await TunPair.open({ inside: cfg.tun, outside: cfg.tunOutside }, cfg.offload, cfg.datapathIo);
    checkDatapathIo(cfg.datapathIo, tuns.devices);
    // Attached to the devices the stopped masq left: ordinary again, they go with this process.
    if (restored) for (const d of tuns.devices) d.setPersist(false);
    sysfsOurs = await sysfsIsOurs();
    const rps = rpsMaskFor(placement.rpsCpus, [cfg.tun, cfg.tunOutside], sysfsOurs);
    if (typeof rps === "object")
      log.warn({ tuns: [cfg.tun, cfg.tunOutside] }, `RPS left off: ${rps.skipped}`);
    else rpsCpus = rps;
    hostApplied = true;
    if (!restored) await applyRunHost(rpsCpus);
    datapath = new Datapath(engine, tuns.ports(), clock, ip6);
    if (placement.datapathCpu !== undefined) loadAddon().pinThread(placement.datapathCpu);
    log.info(
      { datapathPriority: applyDatapathPriority(cfg.datapathPriority, loadAddon()) },
      "packet loop scheduling",
    );
    loadAddon().setBusyPoll(cfg.busyPollUs);
    datapath.start();
    const natEvents = engine.natEvents;
    if (natEvents) {
      natLog = startNatLog(cfg.natLog, () => [natEvents], loadAddon);
      log.info({ syslog: cfg.natLog.syslog?.text, ipfix: cfg.natLog.ipfix?.text }, "NAT event log on");
    }
    if (restored) rmSync(snapshotFile, { force: true });
    const forwards = await startForwards(cfg, host, engine, stateFile, log);
    reloader = new Reloader({
      running: cfg,
      resolve: opts.reread ?? (() => cfg),
      live: engineLive(engine, algs),
      forwards,
      log,
      setBusyPoll: (us) => loadAddon().setBusyPoll(us),
    });
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
      upnp: () => upnp?.stats(),
      natLog: () => natLog?.counters(),
      reloads: () => reloader?.stats,
    });
    metricsListener = await serveMetrics(cfg, metrics, log);
    // Scale-out (`[cgnat] nodes`): whois answers for the whole pool, naming the gateway.
    const { scaleOut } = scaleOutOf(cfg.cgnat, cfg.ports);
    const api = controlApi({
      engine,
      host,
      startedMs: started,
      datapathCpu: placement.datapathCpu,
      datapath: datapathCounters,
      devices: () => devices.counters(sysfs),
      portmap: () => portmap,
      upnp: () => upnp,
      ipv6: () => ip6 && { ...ip6.counters(clock()), ...pcp6?.service.stats() },
      ipv6Pins: () => ipv6PinViews(cfg.ipv6, pcp6),
      streams: () => server?.streamStats,
      metrics,
      forwards,
      natLog: () => natLog?.counters(),
      reloader,
      stop: (keepState) => requestStop?.(keepState),
      whois: (q) => whoisAnswer(engine, q, scaleOut),
    });
    server = await ControlServer.start(cfg.controlSocket, api);
    // The dashboard shows what the control API answers, and changes forwards through it.
    web = await startDashboard(cfg.web, { engine, api }, log);
    const keptLeases = kept && restored ? leasesAtStart(kept, clockOffset) : undefined;
    const services = await startPortMapping(cfg, host, engine, {
      stateFile,
      forwards,
      log,
      kept: keptLeases,
    });
    ({ portmap, upnp, leases, steering } = services);
    pcp6 = await startIpv6Pcp(cfg.ipv6, cfg.inside, ip6, clock, openDeviceSocket, log);
    if (host.mode === "interface") {
      const dp = datapath;
      const context = {
        cfg,
        host,
        translator: {
          setAddressless: (none: boolean) => engine.setAddressless(none),
          changePublicAddress: (to: number) => {
            const change = engine.changePublicAddress(to);
            return { ...change, resets: dp.sendInside(change.resets) };
          },
        },
        forwards,
        portmap: () => portmap,
        leases: () => leases,
        upnp: () => upnp,
        mappedPorts: () => steering?.steered() ?? [],
        stateFile,
        log,
      };
      follower = await followWanAddress(cfg, host, (t) => onWanTransition(context, t), log);
    }
    printSummary(
      cfg,
      host,
      engine,
      tuns.inside.headerBytes > 0,
      rpsCpus,
      placement.datapathCpu,
      datapathIoSummary(tuns.devices),
      workersFallback,
    );
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
        datapathIo: datapathIoSummary(tuns.devices),
        socket: cfg.controlSocket,
        alg: algs.describe(),
      },
      "masq ready",
    );
    return await waitForStop();
  } catch (err) {
    // Undo what was applied, whatever failed (applyHostSetup already rolls itself back).
    hostApplied = hostApplied && existsSync(stateFile);
    await teardown("start failed");
    throw err;
  }
}
