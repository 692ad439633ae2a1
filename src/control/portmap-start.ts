// NAT-PMP/PCP and UPnP IGD at start: one lease table for all three (one per-host cap, one owner
// per mapping), requests only from the inside, and, in interface mode, the steering rules of a
// mapped port beyond masq's range readied before the mapping is granted.

import { MasqError } from "../errors/masq-error.ts";
import { loadAddon } from "../io/addon.ts";
import { prefixMatcher } from "../packet/addr.ts";
import type { ForwardRegistry } from "../portmap/forwards.ts";
import { type Origin, PortmapLeases } from "../portmap/leases.ts";
import { NeighbourSources } from "../portmap/neighbours.ts";
import type { MappedPortSteering } from "../portmap/port-steering.ts";
import type { PortMapEngine } from "../portmap/portmap-engine.ts";
import { interfaceAddresses, PortmapServer } from "../portmap/server.ts";
import { UpnpServer } from "../portmap/upnp/server.ts";
import type { RunConfig } from "./config.ts";
import type { Resolved } from "./engine-config.ts";
import { mappedPortSteering } from "./forward-steering.ts";
import type { createLogger } from "./log.ts";
import type { LeasesAtStart } from "./restart.ts";

/** The port-mapping services that run (each undefined when it is off). */
export interface PortMapping {
  portmap: PortmapServer | undefined;
  upnp: UpnpServer | undefined;
  leases: PortmapLeases | undefined;
  steering: MappedPortSteering | undefined;
}

/** Starts NAT-PMP/PCP and UPnP as configured; nothing when both are off. */
export async function startPortMapping(
  cfg: RunConfig,
  host: Resolved,
  engine: PortMapEngine,
  ctx: {
    stateFile: string;
    forwards: ForwardRegistry;
    log: ReturnType<typeof createLogger>;
    /** The stopped masq's leases (`masq stop --keep-state`), taken up before any request is heard. */
    kept?: LeasesAtStart | undefined;
  },
): Promise<PortMapping> {
  const { log } = ctx;
  const out: PortMapping = { portmap: undefined, upnp: undefined, leases: undefined, steering: undefined };
  const natpmpOrPcp = cfg.portmap.enabled && (cfg.portmap.natpmp || cfg.portmap.pcp);
  if (!natpmpOrPcp && !cfg.upnp.enabled) return out;
  const listen = interfaceAddresses(cfg.inside);
  const what = natpmpOrPcp ? "portmap" : "upnp";
  if (listen.length === 0)
    throw new MasqError(
      "MASQ_ERR_INTERFACE_MISSING",
      `${what}: inside interface(s) ${cfg.inside.join(", ")} have no IPv4 address to listen on`,
    );
  // Requests only from hosts the gateway sees on the inside (issue 16: forged sources).
  const sources = cfg.portmap.requireNeighbour
    ? new NeighbourSources({
        allowed: cfg.portmap.allowedHosts,
        onError: (err) => log.warn({ err }, `${what}: the neighbour table cannot be read`),
      })
    : undefined;
  const openSocket = (address: string, port: number, device: string) =>
    loadAddon().udpSocketOnDevice(address, port, device);
  // Interface mode: a suggested port beyond masq's range gets rules of its own (issue 11).
  const steer = mappedPortSteering(cfg, host, ctx.stateFile, log, ctx.forwards);
  out.steering = steer;
  const leases = new PortmapLeases(
    engine,
    cfg.portmap,
    log,
    prefixMatcher(engine.config.inside),
    (name: string, origin: Origin) =>
      origin === "upnp" ? out.upnp?.count(name) : out.portmap?.service.count(name),
    steer,
  );
  out.leases = leases;
  if (ctx.kept) leases.adopt(ctx.kept.grants);
  if (natpmpOrPcp)
    out.portmap = await PortmapServer.start({
      engine,
      config: cfg.portmap,
      insideNetworks: engine.config.inside,
      ...(sources ? { sources } : {}),
      ...(steer ? { steering: steer } : {}),
      leases,
      listen,
      openSocket,
      log,
      ...(ctx.kept?.epochStartMs !== undefined ? { epochStartMs: ctx.kept.epochStartMs } : {}),
    });
  // The caller learns of nothing that started when this fails: what did start is closed here.
  if (cfg.upnp.enabled)
    out.upnp = await UpnpServer.start({
      engine,
      config: cfg.upnp,
      leases,
      listen,
      insideNetworks: engine.config.inside,
      ...(sources ? { sources } : {}),
      openSocket,
      log,
      seed: `${cfg.tun}:${cfg.outside}`,
      // A port beyond masq's range is readied (its rules) before UPnP decides, as for NAT-PMP.
      ...(steer ? { preparePort: (proto: "tcp" | "udp", port: number) => steer.ready(proto, port) } : {}),
    }).catch(async (err: unknown) => {
      await out.portmap?.close();
      throw err;
    });
  return out;
}
