// UPnP IGD on the inside interfaces: SSDP (ssdp-server.ts) and the description and control
// server (http.ts) on each inside address, acting through the lease table NAT-PMP and PCP share
// (mappings.ts over leases.ts). Nothing listens on the outside interface.

import type { Server } from "node:http";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { MasqError } from "../../errors/masq-error.ts";
import { prefixMatcher } from "../../packet/addr.ts";
import type { PortmapLeases } from "../leases.ts";
import type { RequestSources } from "../neighbours.ts";
import type { PortMapEngine } from "../portmap-engine.ts";
import type { ListenAddress } from "../server.ts";
import type { PortmapLog } from "../service.ts";
import type { ControlContext, WanCounters } from "./actions.ts";
import type { UpnpConfig } from "./config.ts";
import { igdTree } from "./device.ts";
import { createUpnpHttpServer, type PreparePort, ROOT_DESC_PATH } from "./http.ts";
import { UpnpMappings } from "./mappings.ts";
import { SsdpServer } from "./ssdp-server.ts";

export interface UpnpServerOptions {
  engine: PortMapEngine;
  config: UpnpConfig;
  /** The lease table NAT-PMP and PCP use (one per-host cap for all three). */
  leases: PortmapLeases;
  listen: ListenAddress[];
  insideNetworks: Array<{ addr: number; len: number }>;
  sources?: RequestSources;
  openSocket: (address: string, port: number, device: string) => number;
  log: PortmapLog;
  /** Makes the device UDNs (stable for one gateway); default: the host name. */
  seed?: string;
  /**
   * Readies an external port before an add is decided (the hook of the lease table's port
   * steering, which NAT-PMP and PCP requests go through too); absent: nothing to ready.
   */
  preparePort?: PreparePort;
}

/** Bumped when the description changes in a way clients must notice (UDA 1.1 CONFIGID). */
const CONFIG_ID = 1;

export class UpnpServer {
  readonly counters: Record<string, number> = {
    http_requests: 0,
    http_not_inside: 0,
    soap_ok: 0,
    ssdp_searches: 0,
    ssdp_answers: 0,
    ssdp_not_inside: 0,
    ssdp_rate_limited: 0,
    ssdp_answers_over_budget: 0,
    mappings_created: 0,
    mappings_renewed: 0,
    mappings_deleted: 0,
  };
  readonly mappings: UpnpMappings;
  private readonly http: Server[] = [];
  private ssdp: SsdpServer | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  private constructor(private readonly o: UpnpServerOptions) {
    this.mappings = new UpnpMappings(o.leases, o.engine, o.config);
  }

  count(name: string): void {
    this.counters[name] = (this.counters[name] ?? 0) + 1;
  }

  stats(): Record<string, number> {
    return { ...this.counters, mappings_active: this.mappings.list().length };
  }

  static async start(o: UpnpServerOptions): Promise<UpnpServer> {
    const server = new UpnpServer(o);
    try {
      await server.listen();
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  private async listen(): Promise<void> {
    const o = this.o;
    const isInside = prefixMatcher(o.insideNetworks);
    const root = igdTree(o.config.version, o.seed ?? hostname());
    const started = performance.now();
    const control: ControlContext = {
      version: o.config.version,
      mappings: this.mappings,
      externalAddress: (client) =>
        o.engine.config.outside.length === 0 ? 0 : o.engine.pairedAddress(client),
      uptimeSec: () => Math.floor((performance.now() - started) / 1000),
      wanCounters: (): WanCounters => {
        const c = o.engine.stats().counters;
        return {
          bytesSent: c.bytes_out ?? 0,
          bytesReceived: c.bytes_in ?? 0,
          packetsSent: c.translated_out ?? 0,
          packetsReceived: c.translated_in ?? 0,
        };
      },
    };
    const ssdpListen = [];
    const devices = new Set<string>();
    for (const { address, device } of o.listen) {
      const http = createUpnpHttpServer({
        root,
        configId: CONFIG_ID,
        control,
        isInside,
        identify: async (addr) => {
          if (!o.sources) return `ip:${addr >>> 0}`;
          await o.sources.ready(addr, device);
          const who = o.sources.identify(addr, device);
          if (who === undefined) this.count("refused_not_neighbour");
          return who;
        },
        count: (n) => this.count(n),
        ...(o.preparePort ? { preparePort: o.preparePort } : {}),
        log: o.log,
      });
      this.http.push(http);
      const port = await new Promise<number>((resolve, reject) => {
        http.once("error", (err) =>
          reject(
            new MasqError(
              "MASQ_ERR_SOCKET_IN_USE",
              `upnp: cannot listen on ${address}:${o.config.httpPort} (${err.message}); set upnp.http_port to a free port`,
            ),
          ),
        );
        http.listen({ host: address, port: o.config.httpPort }, () => {
          const a = http.address();
          resolve(typeof a === "object" && a ? a.port : o.config.httpPort);
        });
      });
      // One SSDP socket per interface (port 1900 bound to the device), announcing its first address.
      if (devices.has(device)) continue;
      devices.add(device);
      ssdpListen.push({ address, device, location: `http://${address}:${port}${ROOT_DESC_PATH}` });
    }
    try {
      this.ssdp = await SsdpServer.start({
        root,
        listen: ssdpListen,
        notifyIntervalSec: o.config.notifyIntervalSec,
        // BOOTID.UPNP.ORG: seconds since the epoch, so each start has a new one (UDA 1.1 §1.2.2).
        bootId: Math.floor(Date.now() / 1000) >>> 0,
        configId: CONFIG_ID,
        isInside,
        count: (n) => this.count(n),
        openSocket: o.openSocket,
        log: o.log,
      });
    } catch (err) {
      throw new MasqError(
        "MASQ_ERR_SOCKET_IN_USE",
        `upnp: cannot listen on UDP 1900 of ${ssdpListen.map((l) => l.device).join(", ")} (${(err as Error).message}); is another UPnP server (miniupnpd, minissdpd) running? Set upnp.enabled = false to run without`,
      );
    }
    // Lapsed leases are forgotten once a second (reading the live ones does it), so what a grant
    // holds beyond its pin (a steered port's rules) goes with it even when NAT-PMP/PCP are off.
    this.sweeper = setInterval(() => this.mappings.list(), 1000);
    this.sweeper.unref();
    o.log.info(
      { version: o.config.version, description: ssdpListen.map((l) => l.location) },
      "UPnP IGD listening",
    );
  }

  /** The public address changed: announce the device again, so clients read it anew. */
  readvertise(): Promise<void> {
    return this.ssdp?.readvertise() ?? Promise.resolve();
  }

  /**
   * Stops: byebye, servers closed, and every UPnP mapping removed, unless `keepMappings` (`masq
   * stop --keep-state`: the lease table goes into the snapshot and the next run serves them).
   */
  async close(keepMappings = false): Promise<void> {
    clearInterval(this.sweeper);
    await this.ssdp?.close();
    this.ssdp = undefined;
    await Promise.all(
      this.http.splice(0).map(
        (h) =>
          new Promise<void>((resolve) => {
            h.closeAllConnections();
            h.close(() => resolve());
          }),
      ),
    );
    if (!keepMappings) this.mappings.clear();
  }
}
