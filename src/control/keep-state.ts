// `masq stop --keep-state` and the `masq run` after it: the engine's state to a snapshot file and
// back (snapshot-file.ts holds the format). What decides whether a snapshot may be taken is here:
// the same state layout (state-layout.ts: another masq version is fine when its tables are laid
// out the same, so an upgrade keeps the connections), the same configuration as far as it
// decides the tables' sizes and the translation (configHash), the same boot (a reboot takes the
// persistent TUN with it). Whatever refuses it, masq starts empty and says why.
import { createHash } from "node:crypto";
import { readFileSync, renameSync, rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { AlgRegistry } from "../alg/registry.ts";
import type { Ip6Filter } from "../ipv6fw/filter.ts";
import type { EngineConfig } from "../nat/config.ts";
import type { NatEngine } from "../nat/engine.ts";
import type { ArrayContent, StateImage } from "../nat/snapshot.ts";
import { ImageMismatch } from "../nat/snapshot.ts";
import type { RunConfig } from "./config.ts";
import {
  decodeSnapshot,
  encodeSnapshot,
  type KeptLeases,
  readSnapshotFile,
  type SnapshotHeader,
  SnapshotRefused,
  writeSnapshotFile,
} from "./snapshot-file.ts";
import { canonicalJson, imageParts, stateLayoutFingerprint } from "./state-layout.ts";
import { masqVersion } from "./version.ts";

export { SnapshotRefused } from "./snapshot-file.ts";
export { masqVersion } from "./version.ts";

/** The snapshot next to the host state file it goes with: `<state>.snapshot`. */
export function snapshotFileFor(hostStateFile: string): string {
  return hostStateFile.replace(/\.json$/, "") + ".snapshot";
}

/**
 * A hash of what must be the same for a snapshot to fit: the engine's configuration but for
 * what the new run may change (seeds, which the snapshot brings; timeouts, MTUs, the MSS clamp
 * and the gateway's own addresses, which only apply from now on), the ALGs (a flow records its
 * ALG by its place in the list), the TUN names and their offloads (the devices are kept).
 */
export function configHash(cfg: RunConfig, engine: EngineConfig): string {
  const {
    portSeed: _p,
    hashSeed: _h,
    timeouts: _t,
    insideMtu: _i,
    outsideMtu: _o,
    mssClamp: _m,
    gateway: _g,
    ...layout
  } = engine;
  // The IPv6 filter's table is kept when it is on: its size must be the same.
  const ipv6 = cfg.ipv6.firewall ? { maxFlows: cfg.ipv6.maxFlows } : false;
  const what = { layout, alg: cfg.alg, tun: cfg.tun, tunOutside: cfg.tunOutside, offload: cfg.offload, ipv6 };
  return createHash("sha256").update(canonicalJson(what)).digest("hex");
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown";
  }
}

/** CLOCK_MONOTONIC (shared by every process of the boot, unlike performance.now()), in ns. */
function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

export interface SnapshotWritten {
  file: string;
  bytes: number;
  ms: number;
  flows: number;
}

export interface SnapshotInfo {
  configHash: string;
  clockMs: number;
  /** The IPv6 filter (`[ipv6] firewall`), whose table is kept with the engine's. */
  ip6?: Ip6Filter | undefined;
  /** The NAT-PMP/PCP/UPnP lease table and epoch, when port mapping runs. */
  leases?: KeptLeases | undefined;
}

/**
 * Writes the engine's state (and the ALGs', and the IPv6 filter's when it is on) to `file`.
 * `clockMs`: the engine clock now (the daemon's clock, which the next run continues and the
 * IPv6 filter shares).
 */
export function writeSnapshot(
  file: string,
  engine: NatEngine,
  algs: AlgRegistry,
  info: SnapshotInfo,
): SnapshotWritten {
  const began = performance.now();
  const image = engine.captureState(imageParts(algs, info.ip6));
  const header: SnapshotHeader = {
    masqVersion: masqVersion(),
    stateLayout: stateLayoutFingerprint(),
    configHash: info.configHash,
    createdAt: new Date().toISOString(),
    monotonicNs: String(monotonicNs()),
    bootId: bootId(),
    clockMs: info.clockMs,
    portSeed: engine.config.portSeed,
    flows: engine.flowTable.count,
    mappings: engine.mappingTable.count,
    pins: engine.pins.size,
    ...(info.leases ? { leases: info.leases } : {}),
  };
  const pieces = encodeSnapshot(header, image);
  writeSnapshotFile(file, pieces);
  const bytes = pieces.reduce((n, p) => n + p.byteLength, 0);
  return { file, bytes, ms: Math.round(performance.now() - began), flows: header.flows };
}

export interface KeptState {
  header: SnapshotHeader;
  image: StateImage<ArrayContent>;
  /** How long masq was down (ms), from CLOCK_MONOTONIC. */
  downMs: number;
}

/**
 * The snapshot at `file` if this masq can read it (the same state layout, whatever the version
 * that wrote it) and it fits this configuration; undefined when there is none; SnapshotRefused
 * naming why otherwise.
 */
export function readKeptState(file: string, expectedHash: string): KeptState | undefined {
  const data = readSnapshotFile(file);
  if (!data) return undefined;
  const { header, image } = decodeSnapshot(file, data);
  const layout = stateLayoutFingerprint();
  if (header.stateLayout !== layout)
    throw new SnapshotRefused(
      file,
      `state layout changed (written by masq ${header.masqVersion} with layout ${header.stateLayout}, ` +
        `this is masq ${masqVersion()} with layout ${layout})`,
    );
  if (header.configHash !== expectedHash)
    throw new SnapshotRefused(
      file,
      "written with another configuration (table sizes, addresses, ports, filtering, firewall, ALGs or TUNs differ)",
    );
  if (header.bootId !== bootId()) throw new SnapshotRefused(file, "written before the machine rebooted");
  const downNs = monotonicNs() - BigInt(header.monotonicNs);
  return { header, image, downMs: Number(downNs / 1_000_000n) };
}

/**
 * Restores kept state into a fresh engine (built with the snapshot's port seed); SnapshotRefused
 * when the image does not fit it (another layout), the engine then as fresh as it was.
 */
export function restoreKeptState(
  file: string,
  kept: KeptState,
  engine: NatEngine,
  algs: AlgRegistry,
  ip6?: Ip6Filter,
): void {
  try {
    engine.restoreState(kept.image, imageParts(algs, ip6));
  } catch (err) {
    if (err instanceof ImageMismatch)
      throw new SnapshotRefused(file, `its tables do not fit (state layout changed?): ${err.message}`);
    throw err;
  }
}

/** A refused snapshot is kept aside as `<file>.refused-<time>` for a look, not read again. */
export function setSnapshotAside(file: string): string {
  const aside = `${file}.refused-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  try {
    renameSync(file, aside);
  } catch {
    rmSync(file, { force: true });
  }
  return aside;
}
