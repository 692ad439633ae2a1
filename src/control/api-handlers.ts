// The control API's handlers (server.ts routes to them): health, the connection table, the
// counters, the Prometheus text and the port forwards of a running masq.

import { performance } from "node:perf_hooks";
import { sumCounters } from "../datapath/tuns.ts";
import type { EngineStats, PinView } from "../nat/view.ts";
import type { RuleHits } from "../policy/rules.ts";
import { type ForwardRegistry, type ForwardText, forwardText, parseForward } from "../portmap/forwards.ts";
import type { PortmapServer } from "../portmap/server.ts";
import type { UpnpServer } from "../portmap/upnp/server.ts";
import type { StreamStats } from "./chunked.ts";
import { type ConnsEngine, connsBody } from "./conns-listing.ts";
import type { Resolved } from "./engine-config.ts";
import type { StatsReply } from "./format.ts";
import type { createMetrics } from "./metrics.ts";
import type { Reloader } from "./reload.ts";
import { ControlError, type ControlSource } from "./server.ts";
import type { WhoisReply } from "./whois.ts";

/** What the handlers read of the engine: one engine, or the workers' shards (ShardedEngine). */
export interface ControlEngine extends ConnsEngine {
  stats(): EngineStats;
  readonly addressless: boolean;
  readonly config: { readonly portSeed?: number };
  readonly firewall: { list(): RuleHits[] } | null | undefined;
}

/** What the handlers read; the getters are asked per request (things start one after another). */
export interface ApiSources {
  engine: ControlEngine;
  host: Resolved;
  /** performance.now() when masq started. */
  startedMs: number;
  datapathCpu: number | undefined;
  datapath: () => StatsReply["datapath"];
  devices: () => Record<string, Record<string, number>>;
  portmap: () => PortmapServer | undefined;
  upnp?: () => UpnpServer | undefined;
  /** IPv6 filter counters; undefined when it is off. */
  ipv6?: () => Record<string, number> | undefined;
  /** The IPv6 filter's pinholes (config and PCP), shown with the engine's pinned mappings. */
  ipv6Pins?: () => PinView[];
  streams: () => StreamStats | undefined;
  metrics: ReturnType<typeof createMetrics>;
  /** Absent: forwards cannot be listed or changed (several workers). */
  forwards?: ForwardRegistry;
  /** `masq whois`; absent: not available. */
  whois?: (q: URLSearchParams) => WhoisReply;
  /** Why `masq reload` is refused; absent: it is not (with a reloader). */
  reloadRefused?: string;
  /** Why `masq stop --keep-state` is refused; absent: it is not. */
  keepStateRefused?: string;
  /** Per-worker figures for `masq stats` (several workers). */
  workers?: () => StatsReply["workers"];
  /** NAT event log counters; undefined when it is off. */
  natLog?: () => Record<string, number> | undefined;
  reloader?: Reloader;
  /** `masq stop [--keep-state]`: begins the stop once the answer is sent. */
  stop?: (keepState: boolean) => void;
}

export function controlApi(s: ApiSources): ControlSource {
  const { engine, host, reloader } = s;
  const uptimeSec = () => Math.round((performance.now() - s.startedMs) / 1000);
  return {
    health: () => ({ ok: true, pid: process.pid, uptimeSec: uptimeSec() }),
    conns: (query) => connsBody(engine, query, s.ipv6Pins),
    stats: (): StatsReply => {
      const portmap = s.portmap();
      const upnp = s.upnp?.();
      const streams = s.streams();
      const natLog = s.natLog?.();
      const ipv6 = s.ipv6?.();
      return {
        uptimeSec: uptimeSec(),
        mode: host.mode,
        // Interface mode without an address now (wan-follow.ts): none to show.
        publicAddresses: engine.addressless ? [] : host.publicAddresses,
        portSeed: engine.config.portSeed,
        ...(s.datapathCpu !== undefined ? { datapathCpu: s.datapathCpu } : {}),
        engine: engine.stats(),
        datapath: s.datapath(),
        ...deviceStats(s.devices()),
        firewall: engine.firewall?.list() ?? [],
        ...(portmap ? { portmap: portmap.stats() } : {}),
        ...(upnp ? { upnp: upnp.stats() } : {}),
        ...(ipv6 ? { ipv6 } : {}),
        ...(natLog ? { natLog } : {}),
        ...(streams ? { control: { ...streams } } : {}),
        ...(s.reloader ? { reload: { ...s.reloader.stats } } : {}),
        ...(s.workers ? { workers: s.workers() } : {}),
      };
    },
    metrics: async () => ({ contentType: s.metrics.contentType, body: await s.metrics.metrics() }),
    ...(s.forwards ? { forwards: forwardsApi(s.forwards, engine, s.ipv6Pins) } : {}),
    ...(s.whois ? { whois: s.whois } : {}),
    ...(reloader ? { reload: (check: boolean) => reloader.reload(check) } : {}),
    ...(s.reloadRefused !== undefined ? { reload: refuseReload(s.reloadRefused) } : {}),
    ...(s.stop ? { stop: stopApi(s.stop, s.keepStateRefused) } : {}),
  };
}

/** The stats reply's device counters: both TUNs added up, and each one by name. */
function deviceStats(
  perDevice: Record<string, Record<string, number>>,
): Pick<StatsReply, "device" | "devices"> {
  return { device: sumCounters(perDevice), devices: perDevice };
}

/** The control socket's view of the forwards (masq forward add|del|list). */
export function forwardsApi(
  registry: ForwardRegistry,
  engine: Pick<ConnsEngine, "pinList">,
  morePins: () => PinView[] = () => [],
): NonNullable<ControlSource["forwards"]> {
  return {
    list: () => {
      const pins = engine.pinList();
      return {
        forwards: registry.views(pins),
        pins: [...pins, ...morePins()],
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
        throw new ControlError(
          "MASQ_ERR_BAD_REQUEST",
          'body must be {"outside": "8080/tcp", "inside": "192.168.0.2:80"}',
        );
      const t: ForwardText = { outside: b.outside, inside: b.inside };
      if (typeof b.remote === "string") t.remote = b.remote;
      if (typeof b.note === "string") t.note = b.note;
      // A ForwardError carries its code, and so its status (no such forward: 404).
      const f = await registry.add(parseForward(t), "runtime");
      return registry.views().find((v) => v.id === f.id) ?? {};
    },
    remove: async (key) => {
      const f = await registry.remove(key);
      return { removed: f.id, ...forwardText(f.spec) };
    },
  };
}

function refuseReload(why: string): (check: boolean) => Promise<object> {
  return () => Promise.reject(new ControlError("MASQ_ERR_RELOAD_NEEDS_RESTART", why));
}

/** POST /v1/stop {keepState?}: answers with this process's id, then stops (the client waits for it). */
function stopApi(stop: (keepState: boolean) => void, keepStateRefused?: string): (body: unknown) => object {
  return (body) => {
    const keep = (body as { keepState?: unknown } | null)?.keepState;
    if (keep !== undefined && typeof keep !== "boolean")
      throw new ControlError("MASQ_ERR_BAD_REQUEST", "keepState must be true or false");
    if (keep === true && keepStateRefused !== undefined)
      throw new ControlError("MASQ_ERR_BAD_REQUEST", keepStateRefused);
    // After the answer has gone out: the stop closes this socket.
    setImmediate(() => stop(keep === true));
    return { stopping: true, pid: process.pid, keepState: keep === true };
  };
}
