// The daemon's two ends of a restart with the table kept: `masq stop --keep-state` (the state to
// a snapshot, the TUNs made persistent, the host setup left in place) and the `masq run` after
// it (the snapshot checked and restored, the clock moved on, the setup taken over). The daemon
// (daemon.ts) calls these; the format is snapshot-file.ts, what may be kept keep-state.ts.
import { rmSync } from "node:fs";
import type { AlgRegistry } from "../alg/registry.ts";
import type { TunPair } from "../datapath/tuns.ts";
import { adoptHostSetup, readState, run } from "../host/index.ts";
import type { Ip6Filter } from "../ipv6fw/filter.ts";
import type { NatEngine } from "../nat/engine.ts";
import { EXPIRY_BUDGET } from "../nat/flow-life.ts";
import type { Grant } from "../portmap/leases.ts";
import type { RunConfig } from "./config.ts";
import {
  type KeptState,
  masqVersion,
  readKeptState,
  restoreKeptState,
  type SnapshotInfo,
  SnapshotRefused,
  type SnapshotWritten,
  setSnapshotAside,
  writeSnapshot,
} from "./keep-state.ts";
import type { createLogger } from "./log.ts";

type Log = ReturnType<typeof createLogger>;

/** Pins the new run makes again itself: forwards (from the config and their file). */
const REMADE_PIN_ORIGINS = new Set(["forward"]);
/**
 * Pins of NAT-PMP, PCP and UPnP leases: kept with the lease table that holds them (the new run
 * takes the grants up, leasesAtStart), unless their protocol no longer runs.
 */
export const LEASE_ORIGINS: ReadonlySet<string> = new Set(["natpmp", "pcp", "upnp"]);

/** The port-mapping protocols `cfg` runs: the origins whose kept leases it takes up. */
export function leaseOriginsOf(cfg: RunConfig): ReadonlySet<string> {
  const on = new Set<string>();
  if (cfg.portmap.enabled && cfg.portmap.natpmp) on.add("natpmp");
  if (cfg.portmap.enabled && cfg.portmap.pcp) on.add("pcp");
  if (cfg.upnp.enabled) on.add("upnp");
  return on;
}

/** Recorded host steps the new run applies again: the rules of forwarded and mapped ports. */
export function isRemadeStep(what: string): boolean {
  return /^steer (forwarded|mapped) /.test(what);
}

/** Whether `tun` exists as a persistent TUN (left by `masq stop --keep-state`). */
async function persistentTun(tun: string): Promise<boolean> {
  try {
    const links = JSON.parse(await run(["ip", "-j", "-d", "link", "show", "dev", tun])) as Array<{
      linkinfo?: { info_kind?: string; info_data?: { persist?: boolean } };
    }>;
    return links[0]?.linkinfo?.info_kind === "tun" && links[0]?.linkinfo?.info_data?.persist === true;
  } catch {
    return false;
  }
}

/**
 * At start: the kept state of `masq stop --keep-state` when it may be taken up (this masq's
 * state layout, this configuration, this boot, the host setup recorded and its TUNs still there),
 * else undefined: a refused snapshot is logged with its reason and set aside, and masq starts
 * empty (cleaning the leftover setup as after a crash).
 */
export async function keptStateAtStart(
  snapshotFile: string,
  hostStateFile: string,
  configHash: string,
  tuns: readonly string[],
  log: Log,
): Promise<KeptState | undefined> {
  try {
    const kept = readKeptState(snapshotFile, configHash);
    if (!kept) return undefined;
    if (!readState(hostStateFile))
      throw new SnapshotRefused(snapshotFile, `no host setup is recorded (${hostStateFile} is missing)`);
    const left = await Promise.all(tuns.map(persistentTun));
    const gone = tuns.find((_, i) => !left[i]);
    if (gone !== undefined)
      throw new SnapshotRefused(snapshotFile, `the TUN ${gone} the stopped masq left is gone`);
    const version = masqVersion();
    if (kept.header.masqVersion !== version)
      log.info(
        {
          snapshot: snapshotFile,
          from: kept.header.masqVersion,
          to: version,
          stateLayout: kept.header.stateLayout,
        },
        `snapshot written by masq ${kept.header.masqVersion}, taken up by masq ${version}: the state layout is the same`,
      );
    return kept;
  } catch (err) {
    if (!(err instanceof SnapshotRefused) && !(err instanceof Error && "code" in err)) throw err;
    const aside = setSnapshotAside(snapshotFile);
    log.warn(
      {
        snapshot: snapshotFile,
        keptAs: aside,
        reason: err instanceof SnapshotRefused ? err.reason : String(err),
      },
      `${err.message}; masq starts with an empty table`,
    );
    return undefined;
  }
}

/**
 * Restores kept state into the fresh engine and moves its clock on by the time masq was down, so
 * flows that expired meanwhile go now, before a packet is read. Returns the offset of the
 * engine's clock from this process's performance.now(), or undefined when the image did not fit
 * (logged; the engine is as fresh as it was). `leaseOrigins`: the port-mapping protocols this
 * run serves; the pins of the stopped masq's leases of other protocols go.
 */
export function restoreAtStart(
  snapshotFile: string,
  kept: KeptState,
  engine: NatEngine,
  algs: AlgRegistry,
  now: () => number,
  log: Log,
  ip6?: Ip6Filter,
  leaseOrigins: ReadonlySet<string> = new Set(),
): number | undefined {
  try {
    restoreKeptState(snapshotFile, kept, engine, algs, ip6);
  } catch (err) {
    if (!(err instanceof SnapshotRefused)) throw err;
    const aside = setSnapshotAside(snapshotFile);
    log.warn(
      { snapshot: snapshotFile, keptAs: aside, reason: err.reason },
      `${err.message}; masq starts empty`,
    );
    return undefined;
  }
  const offsetMs = kept.header.clockMs + kept.downMs - now();
  const clock = () => now() + offsetMs;
  const flowsKept = engine.flowTable.count;
  // Expiry is budgeted per tick; a long gap may need several (each record is visited at most
  // twice: once to reschedule, once to expire).
  for (let i = 0; i < 2 + (2 * engine.flowTable.capacity) / EXPIRY_BUDGET; i++) {
    engine.tick(clock());
    if (!engine.timersBehind) break;
  }
  // A lease's pin stays only with its grant (which the new run takes up); forwards are pinned anew.
  const granted = new Set(
    (kept.header.leases?.grants ?? []).filter((g) => leaseOrigins.has(g.origin)).map((g) => g.pinId),
  );
  let leasePins = 0;
  for (const p of engine.pinList()) {
    if (REMADE_PIN_ORIGINS.has(p.origin)) engine.unpin(p.id);
    else if (LEASE_ORIGINS.has(p.origin)) {
      if (granted.has(p.id)) leasePins++;
      else engine.unpin(p.id);
    }
  }
  // PCP's IPv6 pinholes are asked for again (the IPv6 PCP server keeps no lease table yet); its flows stay.
  ip6?.closeAllPinholes();
  log.info(
    {
      snapshot: snapshotFile,
      downMs: kept.downMs,
      flows: engine.flowTable.count,
      expiredWhileDown: flowsKept - engine.flowTable.count,
      mappings: engine.mappingTable.count,
      pins: engine.pins.size,
      leasePins,
    },
    "state restored from the snapshot (fragments in flight were not kept; PCP's IPv6 pinholes are asked for again)",
  );
  return offsetMs;
}

/** The stopped masq's lease table as the new run's port mapping takes it up (portmap-start.ts). */
export interface LeasesAtStart {
  grants: Grant[];
  /** When the NAT-PMP/PCP epoch began, on this process's performance.now(); absent: now. */
  epochStartMs?: number;
}

/**
 * The leases a restored snapshot carries, for startPortMapping; `clockOffsetMs` is what
 * restoreAtStart returned. The epoch goes on from where it was, the downtime counted (the
 * engine's clock at the stop less how far the epoch had run is its start on the engine's clock).
 */
export function leasesAtStart(kept: KeptState, clockOffsetMs: number): LeasesAtStart | undefined {
  const l = kept.header.leases;
  if (!l) return undefined;
  return {
    grants: l.grants,
    ...(l.epochMs !== undefined ? { epochStartMs: kept.header.clockMs - l.epochMs - clockOffsetMs } : {}),
  };
}

/** Takes over the stopped masq's host setup (its forwards' rules are applied again). */
export async function adoptAtStart(hostStateFile: string, log: Log): Promise<void> {
  await adoptHostSetup(hostStateFile, isRemadeStep, { log });
}

/**
 * `masq stop --keep-state`, the part that must not be interleaved with packets (one synchronous
 * run: no batch is read between the capture and the close): the snapshot written, the TUNs made
 * persistent and closed. On a failure the snapshot is removed and the error thrown: the caller
 * then stops as usual, undoing the host setup.
 */
export function snapshotAndLeave(
  snapshotFile: string,
  engine: NatEngine,
  algs: AlgRegistry,
  tuns: TunPair,
  info: SnapshotInfo,
): SnapshotWritten {
  let written: SnapshotWritten;
  try {
    written = writeSnapshot(snapshotFile, engine, algs, info);
    for (const d of tuns.devices) d.setPersist(true);
  } catch (err) {
    rmSync(snapshotFile, { force: true });
    for (const d of tuns.devices) {
      try {
        d.setPersist(false);
      } catch {
        // closed already, or never persistent
      }
    }
    throw err;
  }
  tuns.close();
  return written;
}
