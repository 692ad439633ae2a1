// The scale-out network of deterministic NAT (`masq lab --gateways 2`, test/e2e/cgnat-scaleout):
// two masq gateways share one outside pool (each owns its part, `[cgnat] nodes`, `node`) behind
// a LAN router whose default route is the kernel's ECMP multipath over both, hashing by inside
// source only; three boxes on the routed inside prefix.
//
//   abox ─┐                          ┌─ 10.255.0.1 [gate0] 198.51.100.2 ─┐
//   bbox ─┼─ 100.64.0.1 [rtr] (ECMP) ┤                                   ├─ [isp] ── 203.0.113.10 [inet]
//   cbox ─┘                          └─ 10.255.1.1 [gate1] 198.51.100.6 ─┘
//
// The isp routes each gateway's part of the pool 198.51.100.100/31 to it; it has no route to
// the inside. A gateway fails as a node does: masq stops and its link to the router goes down;
// the router's kernel then leaves that nexthop out (ignore_routes_with_linkdown), so the failed
// gateway's hosts hash to the other one while the other's hosts keep their path.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { scaleOutOf } from "../control/cgnat-config.ts";
import { resolveRunConfig } from "../control/config.ts";
import { type DeterministicPool, nodePart } from "../nat/deterministic-pool.ts";
import { formatIpv4, parseIpv4 } from "../packet/addr.ts";
import { labScript, type MasqGateway, type MasqProcess, startMasq } from "./masq-process.ts";
import { Lab, type LabProcess } from "./netns.ts";
import { waitUntil } from "./wait.ts";

export const SCALEOUT_INSIDE = "100.64.0.0/24";
export const SCALEOUT_POOL = "198.51.100.100/31";
const POOL_ADDRESSES = ["198.51.100.100", "198.51.100.101"];
const ROUTER_ADDR = "100.64.0.1";
const INET_ADDR = "203.0.113.10";

export interface ScaleoutBox {
  name: "abox" | "bbox" | "cbox";
  ns: string;
  addr: string;
}

export interface ScaleoutGateway extends MasqGateway {
  node: number;
  /** The router's interface toward this gateway. */
  routerDev: string;
  /** The addresses of the pool this gateway owns. */
  own: string[];
}

export interface ScaleoutNetwork {
  lab: Lab;
  boxes: ScaleoutBox[];
  gateways: ScaleoutGateway[];
  router: { ns: string };
  inet: { ns: string; addr: string };
  isp: { ns: string };
  /** The whole pool's function, as every gateway computes it (for checks and the lab's text). */
  pool: DeterministicPool;
  destroy(): Promise<unknown>;
}

/** Builds the network (no masq yet); `prefix` starts every namespace name. */
export async function buildScaleoutNetwork(prefix: string): Promise<ScaleoutNetwork> {
  const lab = new Lab({ prefix });
  try {
    return await build(lab);
  } catch (err) {
    await lab.destroy();
    throw err;
  }
}

async function build(lab: Lab): Promise<ScaleoutNetwork> {
  const rtr = await lab.addNamespace("rtr");
  const isp = await lab.addNamespace("isp");
  const inet = await lab.addNamespace("inet");
  const gateways: ScaleoutGateway[] = [];
  await lab.veth({ ns: isp, dev: "up0" }, { ns: inet, dev: "eth0" });
  await lab.addAddr(isp, "up0", "203.0.113.1/24");
  await lab.addAddr(inet, "eth0", `${INET_ADDR}/24`);
  await lab.addRoute(inet, "default", "via", "203.0.113.1");
  await lab.sysctl(isp, "net.ipv4.ip_forward", 1);
  for (const k of [0, 1]) {
    const ns = await lab.addNamespace(`gate${k}`);
    const routerDev = `to-gw${k}`;
    await lab.veth({ ns, dev: "in0" }, { ns: rtr, dev: routerDev });
    await lab.addAddr(ns, "in0", `10.255.${k}.1/30`);
    await lab.addAddr(rtr, routerDev, `10.255.${k}.2/30`);
    await lab.veth({ ns, dev: "wan0" }, { ns: isp, dev: `down${k}` });
    await lab.addAddr(ns, "wan0", `198.51.100.${2 + 4 * k}/30`);
    await lab.addAddr(isp, `down${k}`, `198.51.100.${1 + 4 * k}/30`);
    await lab.addRoute(ns, "default", "via", `198.51.100.${1 + 4 * k}`);
    // The inside is routed: replies to the boxes go back through the router.
    await lab.addRoute(ns, SCALEOUT_INSIDE, "via", `10.255.${k}.2`);
    await lab.sysctl(ns, "net.ipv4.ip_forward", 1);
    const part = nodePart(POOL_ADDRESSES.length, 2, k);
    const own = POOL_ADDRESSES.slice(part.first, part.first + part.count);
    for (const a of own) await lab.addRoute(isp, `${a}/32`, "via", `198.51.100.${2 + 4 * k}`);
    gateways.push({
      lab,
      mode: "pool",
      publicAddr: SCALEOUT_POOL,
      gate: { ns, lan: "in0", wan: "wan0" },
      node: k,
      routerDev,
      own,
    });
  }
  // The router: the boxes' LAN, and ECMP over both gateways hashing by the inside source alone
  // (policy 3 with the source address as the only field), set in this namespace only.
  await lab.sysctl(rtr, "net.ipv4.ip_forward", 1);
  await lab.sysctl(rtr, "net.ipv4.fib_multipath_hash_policy", 3);
  await lab.sysctl(rtr, "net.ipv4.fib_multipath_hash_fields", "0x0001");
  await lab.sysctl(rtr, "net.ipv4.conf.all.ignore_routes_with_linkdown", 1);
  await lab.bridge(rtr, "lan0");
  await lab.addAddr(rtr, "lan0", `${ROUTER_ADDR}/24`);
  await lab.addRoute(
    rtr,
    "default",
    ...gateways.flatMap((g) => ["nexthop", "via", `10.255.${g.node}.1`, "dev", g.routerDev]),
  );
  for (const n of [isp, inet]) await lab.sysctl(n, "net.ipv4.icmp_ratelimit", 0);

  // The boxes' links first: the router's LAN has a carrier then, so its kernel can say which
  // gateway a source would be hashed to. A-box and B-box get addresses hashed to different
  // gateways (the router's hash seed is its own), so the lab shows both in use and a failover.
  const names = ["abox", "bbox", "cbox"] as const;
  const nss: string[] = [];
  for (const name of names) {
    const ns = await lab.addNamespace(name);
    await lab.veth({ ns: rtr, dev: `lan-${name}` }, { ns, dev: "eth0" });
    await lab.ip(rtr, "link", "set", "dev", `lan-${name}`, "master", "lan0");
    nss.push(ns);
  }
  const candidates = Array.from({ length: 200 }, (_, i) => `100.64.0.${i + 2}`);
  const a = candidates[0];
  const aNode = await waitUntil("the router's route for A-box", () =>
    routedNode(lab, rtr, a).catch(() => undefined),
  );
  let b: string | undefined;
  for (const x of candidates.slice(1))
    if ((await routedNode(lab, rtr, x)) !== aNode) {
      b = x;
      break;
    }
  if (b === undefined) throw new Error("the router's ECMP sent every candidate address to one gateway");
  const addrs = [a, b, candidates.find((x) => x !== a && x !== b)!];
  const boxes: ScaleoutBox[] = [];
  for (const [i, name] of names.entries()) {
    await lab.addAddr(nss[i], "eth0", `${addrs[i]}/24`);
    await lab.addRoute(nss[i], "default", "via", ROUTER_ADDR);
    boxes.push({ name, ns: nss[i], addr: addrs[i] });
  }
  return {
    lab,
    boxes,
    gateways,
    router: { ns: rtr },
    inet: { ns: inet, addr: INET_ADDR },
    isp: { ns: isp },
    pool: wholePool(),
    destroy: () => lab.destroy(),
  };
}

/** The whole pool's function, computed from a gateway's configuration as masq computes it. */
function wholePool(): DeterministicPool {
  const cfg = resolveRunConfig(
    { inside: ["in0"], outside: "wan0", address: [SCALEOUT_POOL], config: "gate0.toml" },
    () => scaleoutConfig(0),
  );
  const so = scaleOutOf(cfg.cgnat, cfg.ports).scaleOut;
  if (so === undefined) throw new Error("the scale-out configuration shares no pool");
  return so.pool;
}

/** The gateway node the router's ECMP sends traffic from inside source `src` to. */
export async function routedNode(lab: Lab, rtr: string, src: string): Promise<number> {
  const out = await lab.run(rtr, ["ip", "route", "get", INET_ADDR, "from", src, "iif", "lan0"]);
  const m = / dev to-gw(\d+) /.exec(out);
  if (!m) throw new Error(`no gateway in the router's route for ${src}: ${out.trim()}`);
  return Number(m[1]);
}

/** The `[cgnat]` config of gateway `node` (the pool comes by --address). */
export function scaleoutConfig(node: number): string {
  return [
    `inside_networks = ["${SCALEOUT_INSIDE}"]`,
    "[cgnat]",
    'mode = "deterministic"',
    `inside = "${SCALEOUT_INSIDE}"`,
    "nodes = 2",
    `node = ${node}`,
    "",
  ].join("\n");
}

/** Starts masq in both gateways, their configs written under `dir`. */
export async function startScaleoutMasq(net: ScaleoutNetwork, dir: string): Promise<MasqProcess[]> {
  const out: MasqProcess[] = [];
  for (const g of net.gateways) {
    const config = join(dir, `gate${g.node}.toml`);
    writeFileSync(config, scaleoutConfig(g.node));
    out.push(await startMasq(g, { config }));
  }
  return out;
}

/** Starts the Internet host's web (80) and UDP echo (7) services. */
export async function startInet(net: ScaleoutNetwork): Promise<LabProcess> {
  const inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
  await inet.waitFor(/"proto":"udp"/, 10_000);
  return inet;
}

export interface SeenEndpoint {
  addr: string;
  port: number;
}

/** What the Internet host saw of one fetch from `box`; a string (curl's error) when it failed. */
export async function fetchFrom(net: ScaleoutNetwork, box: ScaleoutBox): Promise<SeenEndpoint | string> {
  const r = await net.lab.exec(box.ns, ["curl", "-sS", "--max-time", "5", `http://${net.inet.addr}/`], {
    timeoutMs: 10_000,
  });
  return parseSeen(r.stdout) ?? (r.stderr.trim() || r.stdout.trim() || `curl exited with ${r.code}`);
}

function parseSeen(text: string): SeenEndpoint | undefined {
  const m = /you came from (\d+\.\d+\.\d+\.\d+):(\d+)/.exec(text);
  return m ? { addr: m[1], port: Number(m[2]) } : undefined;
}

/** The node whose part of the pool holds `addr`, or -1. */
export function nodeOfAddress(net: ScaleoutNetwork, addr: string): number {
  return net.pool.nodeOf(parseIpv4(addr) ?? 0);
}

/** The address and range `box` has through gateway `node`, as the whole pool's function says. */
export function rangeThrough(net: ScaleoutNetwork, box: ScaleoutBox, node: number) {
  const r = net.pool.rangeOf(node, parseIpv4(box.addr)!)!;
  return { addr: formatIpv4(r.outAddr), first: r.first, last: r.last };
}

/**
 * A gateway fails: masq stops, then its link to the router goes down, as a node's would; resolves
 * once the router's kernel has left that nexthop out of the default route.
 */
export async function failGateway(net: ScaleoutNetwork, masq: MasqProcess, node: number): Promise<void> {
  const g = net.gateways[node];
  await masq.stop();
  await net.lab.ip(g.gate.ns, "link", "set", "dev", g.gate.lan, "down");
  await waitUntil(
    `the router leaving gateway ${node} out of its ECMP route`,
    async () => /linkdown/.test(await net.lab.run(net.router.ns, ["ip", "route", "show", "default"])),
    { timeoutMs: 20_000 },
  );
}

/** A TCP connection from `box` held open (tcp-hold.ts): what the server saw, now and on each ask. */
export interface HeldConnection {
  first: SeenEndpoint;
  again(): Promise<SeenEndpoint>;
  close(): Promise<void>;
}

export async function holdConnection(net: ScaleoutNetwork, box: ScaleoutBox): Promise<HeldConnection> {
  const p = net.lab.spawn(box.ns, [...labScript("tcp-hold"), "--host", net.inet.addr, "--port", "80"], {
    stdin: true,
  });
  const seen = () =>
    [...p.stdout.matchAll(/you came from (\S+):(\d+)\n/g)].map((m) => ({ addr: m[1], port: Number(m[2]) }));
  const nth = async (n: number) => {
    await waitUntil(
      `answer ${n + 1} on the held connection from ${box.name}`,
      () => seen().length > n || !p.running,
      {
        timeoutMs: 20_000,
      },
    );
    const s = seen()[n];
    if (s === undefined) throw new Error(`the held connection from ${box.name} ended: ${p.stderr.trim()}`);
    return s;
  };
  const first = await nth(0);
  let asked = 1;
  return {
    first,
    again: async () => {
      p.child.stdin?.write("again\n");
      return nth(asked++);
    },
    close: async () => {
      p.child.stdin?.end();
      if (!(await p.waitExit(5000))) await p.kill();
    },
  };
}
