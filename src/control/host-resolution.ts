// What the host says before masq touches it: the interfaces exist, the public addresses (the
// outside interface's own, or the pool expanded), the inside networks (the inside interfaces'
// prefixes unless configured), the MTU, and the config's addresses checked against the host's.

import { MasqError } from "../errors/masq-error.ts";
import {
  assertInterface,
  assertNoEphemeralOverlap,
  DEFAULT_MTU,
  expandPrefix,
  interfaceAddress,
  interfaceIpv4Addresses,
  interfaceMtu,
  interfacePrefixes,
  interfaceSnapshot,
  parsePrefix,
} from "../host/index.ts";
import { startProblem } from "./address-rules.ts";
import type { RunConfig } from "./config.ts";
import { ConfigError } from "./config-error.ts";
import type { Resolved } from "./engine-config.ts";

/** Pool addresses beyond this need a routed prefix upstream, not one proxy-ARP entry each. */
const MAX_POOL_ADDRESSES = 256;
/** Reads what the host says (interfaces, addresses, ephemeral range) and checks it. */
export async function resolveHost(cfg: RunConfig): Promise<Resolved> {
  // One `ip` for every question below, not one each.
  const where = { snapshot: await interfaceSnapshot() };
  for (const i of cfg.inside) await assertInterface(i, "inside", where);
  await assertInterface(cfg.outside, "outside", where);
  const mode = cfg.addresses.length > 0 ? "pool" : "interface";
  let publicAddresses: string[];
  if (mode === "pool") {
    publicAddresses = cfg.addresses.flatMap((a) => expandPrefix(parsePrefix(a)));
    if (publicAddresses.length > MAX_POOL_ADDRESSES)
      throw new ConfigError(
        "--address",
        `${publicAddresses.length} addresses; at most ${MAX_POOL_ADDRESSES} are supported`,
      );
  } else {
    // No address yet (PPP not dialled, DHCP not answered) is no reason to refuse: masq follows
    // the interface (wan-follow.ts) and translates once one comes.
    const own = await interfaceAddress(cfg.outside, where);
    publicAddresses = own ? [own] : [];
    // One address shared with the kernel: its own connections must never pick masq's ports.
    await assertNoEphemeralOverlap(cfg.ports);
  }
  let insideNetworks = cfg.insideNetworks;
  if (insideNetworks.length === 0) {
    insideNetworks = (await Promise.all(cfg.inside.map((i) => interfacePrefixes(i, where)))).flat();
    if (insideNetworks.length === 0)
      throw new MasqError(
        "MASQ_ERR_INTERFACE_MISSING",
        `inside interface(s) ${cfg.inside.join(", ")} have no IPv4 address: give them one, or set inside_networks in the config`,
      );
  }
  const mtus = await Promise.all([...cfg.inside, cfg.outside].map((i) => interfaceMtu(i, where)));
  const mtu = Math.max(576, ...mtus.filter((m): m is number => m !== undefined));
  // What MSS clamping follows: a SYN to an inside host may cross the smallest inside link.
  const known = (ms: Array<number | undefined>) => ms.filter((m): m is number => m !== undefined);
  const insideMtus = known(mtus.slice(0, -1));
  const outsideMtu = mtus[mtus.length - 1] ?? DEFAULT_MTU;
  const insideMtu = insideMtus.length > 0 ? Math.min(...insideMtus) : DEFAULT_MTU;
  // The config's addresses against the host's: refused before anything on the host is touched.
  const gatewayAddresses = (
    await Promise.all([...cfg.inside, cfg.outside].map((i) => interfaceIpv4Addresses(i, where)))
  ).flat();
  const outsideNetworks = await interfacePrefixes(cfg.outside, where);
  const bad = startProblem(cfg, { mode, insideNetworks, publicAddresses, outsideNetworks, gatewayAddresses });
  if (bad) throw new ConfigError(bad.key, bad.problem);
  return { mode, publicAddresses, insideNetworks, mtu, insideMtu, outsideMtu, gatewayAddresses };
}
