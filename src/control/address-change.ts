// What masq does when interface mode's public address changes (wan-address.ts says when): the
// engine drops the flows on the old address and has resets made for the inside hosts' TCP
// connections (src/nat/public-address.ts), which go out of the inside TUN at once; forwards and
// NAT-PMP/PCP mappings move to the new address; exactly the host rules that name the address
// are planned again, the new ones applied and the old ones undone (recorded like the rest of the
// host setup, so exit and crash cleanup remove whichever are in place); the NAT-PMP/PCP epoch
// starts again and the inside links hear the announcements; one log line says old and new.
import { performance } from "node:perf_hooks";
import { applyRecordedStep, type HostStep, publicAddressSteps, undoRecordedStep } from "../host/index.ts";
import { formatIpv4 } from "../packet/addr.ts";
import type { ForwardRegistry } from "../portmap/forwards.ts";
import type { PortmapLeases } from "../portmap/leases.ts";
import type { PortmapServer } from "../portmap/server.ts";
import type { UpnpServer } from "../portmap/upnp/server.ts";
import type { RunConfig } from "./config.ts";
import type { Resolved } from "./engine-config.ts";
import { forwardSteps } from "./host-plan.ts";
import type { createLogger } from "./log.ts";
import type { WanTransition } from "./wan-address.ts";

/** What translates: one engine and its datapath, or every worker's shard (each sends its own resets). */
export interface PublicAddressTarget {
  setAddressless(none: boolean): void;
  /** Moves to address `to`; `resets`: the TCP resets sent to the inside hosts. */
  changePublicAddress(to: number): { old: number; flows: number; moved: number; resets: number };
}

export interface AddressChangeContext {
  cfg: RunConfig;
  /** What the host said at start; its public and gateway addresses follow the interface. */
  host: Resolved;
  translator: PublicAddressTarget;
  /** Absent: no forwards run (several workers). */
  forwards?: ForwardRegistry;
  portmap: () => PortmapServer | undefined;
  /** The lease table NAT-PMP, PCP and UPnP share (absent: none of them runs). */
  leases: () => PortmapLeases | undefined;
  upnp: () => UpnpServer | undefined;
  /** NAT-PMP/PCP mappings' ports beyond masq's range with rules of their own ("tcp/18080"). */
  mappedPorts: () => string[];
  stateFile: string;
  log: ReturnType<typeof createLogger>;
}

/**
 * The host rules that name public address `address`: the plan's (hairpinning, the gateway's
 * own ICMP errors) and, per forward and per mapped port beyond masq's range ("tcp/18080"), its
 * hairpin rules. Their other rules name no address.
 */
export function addressNamingSteps(
  cfg: RunConfig,
  address: string,
  forwards: ReadonlyArray<{ proto: "tcp" | "udp"; first: number; last: number }>,
  mappedPorts: readonly string[] = [],
): HostStep[] {
  const host = { publicAddresses: [address] } as Resolved;
  const named = `${address}/32`;
  return [
    ...publicAddressSteps({
      inside: cfg.inside,
      outside: cfg.outside,
      tun: cfg.tun,
      tunOutside: cfg.tunOutside,
      ports: cfg.ports,
      publicAddress: address,
    }),
    ...forwards.flatMap((f) =>
      forwardSteps(cfg, host, f.proto, f.first, f.last).filter((s) => s.apply.includes(named)),
    ),
    ...mappedPorts.flatMap((key) => {
      const [proto, port] = key.split("/");
      if ((proto !== "tcp" && proto !== "udp") || !(Number(port) > 0)) return [];
      const p = Number(port);
      return forwardSteps(cfg, host, proto, p, p, "mapped").filter((s) => s.apply.includes(named));
    }),
  ];
}

/** Handles one transition of the outside interface's address (never throws: logs). */
export async function onWanTransition(c: AddressChangeContext, t: WanTransition): Promise<void> {
  const { translator, log } = c;
  if (t.kind === "lost") {
    translator.setAddressless(true);
    log.warn(
      { outside: c.cfg.outside, address: formatIpv4(t.address) },
      "the outside interface has no address: packets to the Internet are dropped (no_public_address) until one comes",
    );
    return;
  }
  if (t.kind === "restored") {
    translator.changePublicAddress(t.address);
    log.info(
      { outside: c.cfg.outside, address: formatIpv4(t.address) },
      "the outside interface has its address back: nothing flushed",
    );
    return;
  }
  const old = t.old === 0 ? undefined : formatIpv4(t.old);
  const now = formatIpv4(t.address);
  const began = performance.now();
  const change = translator.changePublicAddress(t.address);
  const resets = change.resets;
  // From here new connections leave from the new address; the rules below only concern
  // hairpinning and the gateway's own ICMP errors.
  const translatingAt = Date.now();
  c.forwards?.movePublicAddress(t.old, t.address);
  const specs = c.forwards?.list().map((f) => f.spec) ?? [];
  const mapped = c.mappedPorts();
  const oldSteps = old === undefined ? [] : addressNamingSteps(c.cfg, old, specs, mapped);
  c.host.publicAddresses = [now];
  const gw = (c.host.gatewayAddresses ?? []).filter((a) => a !== old && a !== now);
  c.host.gatewayAddresses = [...gw, now];
  const failed: string[] = [];
  // New rules first, then the old ones go: both point at the same tables, so nothing is ever
  // steered nowhere.
  for (const step of addressNamingSteps(c.cfg, now, specs, mapped))
    try {
      await applyRecordedStep(step, c.stateFile, { log });
    } catch (err) {
      failed.push(`${step.what}: ${(err as Error).message}`);
    }
  for (const step of oldSteps.reverse())
    try {
      await undoRecordedStep(step.what, c.stateFile, { log });
    } catch (err) {
      failed.push(`undo ${step.what}: ${(err as Error).message}`);
    }
  if (failed.length > 0)
    log.error({ failed }, "the rules naming the public address could not all be replaced");
  c.leases()?.moveAddress(t.old, t.address);
  c.portmap()?.addressChanged(t.old, t.address);
  // UPnP clients learn of the change from a new announcement (byebye, then alive with a new boot id).
  c.upnp()
    ?.readvertise()
    .catch((err: unknown) => log.warn({ err }, "UPnP: the new address could not be announced"));
  log.info(
    {
      outside: c.cfg.outside,
      old: old ?? null,
      new: now,
      flowsDropped: change.flows,
      resets,
      mappingsMoved: change.moved,
      translatingAt,
      rulesMs: Math.round(performance.now() - began),
    },
    old === undefined ? `public address ${now}: translating` : `public address changed from ${old} to ${now}`,
  );
}
