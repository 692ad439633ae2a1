// The port forwards at start: those of the config, then those added at runtime before a restart
// (their state file). In interface mode a forward needs policy rules of its own (forwards.ts);
// they are applied and recorded with the host setup, so exit and crash cleanup remove them.

import { existsSync, renameSync } from "node:fs";
import { basename, join } from "node:path";
import { applyRecordedStep, currentNetnsName, gatewayPortUse, undoRecordedStep } from "../host/index.ts";
import { parseIpv4 } from "../packet/addr.ts";
import { ForwardRegistry, forwardText, type PinEngine, type Steering } from "../portmap/forwards.ts";
import { MappedPortSteering } from "../portmap/port-steering.ts";
import { forwardTargetProblem, toPrefix } from "./address-rules.ts";
import type { RunConfig } from "./config.ts";
import type { Resolved } from "./engine-config.ts";
import { forwardSteps } from "./host-plan.ts";
import type { createLogger } from "./log.ts";

/**
 * The forwards of the config file, then those added at runtime before a restart (state file);
 * in interface mode each TCP forward outside masq's own port range gets its policy rule,
 * recorded with the host setup so exit and crash cleanup remove it.
 */
export async function startForwards(
  cfg: RunConfig,
  host: Resolved,
  engine: PinEngine,
  hostStateFile: string,
  log: ReturnType<typeof createLogger>,
): Promise<ForwardRegistry> {
  const steer = recordedSteering(cfg, host, hostStateFile, log, "forwarded");
  const inside = host.insideNetworks.map((n) => toPrefix(n)!);
  const gateway = [...(host.gatewayAddresses ?? []), ...host.publicAddresses].map((a) => parseIpv4(a)!);
  const registry = new ForwardRegistry({
    engine,
    // Interface mode without an address yet: the forwards wait on 0, moved when it comes.
    publicAddresses: host.publicAddresses.length > 0 ? host.publicAddresses.map((a) => parseIpv4(a)!) : [0],
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
 * Interface mode: the policy rules of outside ports beyond masq's range (forwards', `label`
 * "forwarded", or NAT-PMP/PCP mappings', "mapped"), applied and removed at runtime and recorded
 * with the host setup, so exit and crash cleanup remove them too; pool mode needs none.
 */
export function recordedSteering(
  cfg: RunConfig,
  host: Resolved,
  hostStateFile: string,
  log: ReturnType<typeof createLogger>,
  label: string,
): Steering | undefined {
  if (host.mode !== "interface") return undefined;
  const steps = (proto: "tcp" | "udp", first: number, last: number) =>
    forwardSteps(cfg, host, proto, first, last, label);
  return {
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
  };
}

/**
 * Interface mode: the steering of NAT-PMP/PCP mappings' ports beyond masq's range (port-steering.ts),
 * never of a port the gateway uses itself or a forward has; pool mode needs none.
 */
export function mappedPortSteering(
  cfg: RunConfig,
  host: Resolved,
  hostStateFile: string,
  log: ReturnType<typeof createLogger>,
  forwards: ForwardRegistry,
): MappedPortSteering | undefined {
  const steer = recordedSteering(cfg, host, hostStateFile, log, "mapped");
  if (!steer) return undefined;
  const forwarded = (proto: string, port: number) =>
    forwards.list().some((f) => f.spec.proto === proto && port >= f.spec.first && port <= f.spec.last);
  return new MappedPortSteering({
    range: cfg.ports,
    steer,
    allowLowPorts: cfg.allowLowPorts,
    log,
    inUse: async (proto, port) =>
      forwarded(proto, port) ? `port ${port}/${proto} is forwarded` : gatewayPortUse(proto, port),
  });
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
