// The OS setup around masq's TUN device, as data: an ordered list of steps, each with the argv
// that applies it and the argv that undoes it. Pure (no I/O), so it is unit-tested and can be
// printed (`masq run --dry-run`). The recipe is the one in design.md, "Routing recipe".
//
// Order matters twice: steps are applied in order and undone in reverse, so the link is up
// before routes use it, the routes exist before rules point at their tables, and traffic is
// only steered into the TUN (rules) once everything it needs is in place. On the way out the
// rules go first, so no packet is sent to a TUN that is about to vanish.

/** Placeholder in an undo argv for a value read just before the step is applied. */
export const PRIOR = "{prior}";

/** A value the step overwrites; apply.ts reads it first and substitutes it for PRIOR in `undo`. */
export type Prior =
  | { kind: "sysctl"; key: string }
  | { kind: "mtu"; dev: string }
  /** "up" or "down": undo leaves a device that was already up (and the routes through it) alone. */
  | { kind: "link-state"; dev: string };

export interface HostStep {
  /** Human description, used in logs and error messages. */
  what: string;
  apply: string[];
  /** May contain PRIOR (see `prior`); empty when nothing needs undoing. */
  undo: string[];
  prior?: Prior;
}

export interface PortRange {
  first: number;
  last: number;
}

export interface HostSetupOptions {
  mode: "pool" | "interface";
  /** The TUN device masq reads and writes. */
  tun: string;
  /** Inside (LAN) interfaces: their traffic is steered into the TUN. */
  inside: string[];
  /** The outside (WAN) interface: proxy ARP (pool mode) and steering of replies (interface mode). */
  outside: string;
  /** TUN MTU (default 1500). */
  mtu?: number;
  /** TUN transmit queue length (packets waiting for masq); unchanged when absent. */
  txQueueLen?: number;
  /**
   * Receive Packet Steering on the TUN's receive queue: the CPUs (a sysfs hex mask, see
   * cpuMask) among which the kernel spreads the work on the packets masq writes. Unchanged when
   * absent.
   */
  rpsCpus?: string;
  /** Turn IPv6 off on the TUN (when the kernel has IPv6). Default false. */
  disableTunIpv6?: boolean;
  /** Create the TUN with `ip tuntap` (tests; normally the native addon creates it). Default false. */
  createTun?: boolean;
  /** Pool mode: the public addresses ("198.51.100.100") or prefixes ("198.51.100.96/29"). */
  pool?: string[];
  /** Pool mode: answer ARP for the pool addresses on the outside interface (default true). */
  proxyArp?: boolean;
  /** Interface mode: TCP ports masq owns (default 61000-65534). */
  ports?: PortRange;
  /**
   * Interface mode: the outside interface's address. When given, what inside hosts send to it on
   * masq's ports goes to masq too (before 'local'): the replies of hairpinned connections.
   */
  publicAddress?: string;
  /** Routing tables (defaults: inside 100, outside 101). Pool mode only uses `inside`. */
  tables?: { inside?: number; outside?: number };
  /** Rule priorities (defaults as in design.md). */
  prefs?: Partial<RulePrefs>;
}

export interface RulePrefs {
  /** Pool mode: iif <lan> lookup <inside table> (after 'local' at 0). */
  pool: number;
  /** Interface mode: iif <wan> tcp dport A-B / udp / icmp lookup <outside table>. */
  tcp: number;
  udp: number;
  icmp: number;
  /** Interface mode: where the 'local' rule moves to (from 0). */
  local: number;
  /** Interface mode: iif <lan> lookup <inside table> (after 'local', so traffic to the gateway stays local). */
  inside: number;
}

export const DEFAULT_TABLES = { inside: 100, outside: 101 } as const;
export const DEFAULT_PREFS: RulePrefs = { pool: 100, tcp: 110, udp: 111, icmp: 112, local: 200, inside: 300 };
export const DEFAULT_MTU = 1500;
export const DEFAULT_PORT_RANGE: PortRange = { first: 61000, last: 65534 };
/** iproute2 6.1 rejects 65535 in `dport` (as a bound and alone), so rules stop one short. */
export const MAX_RULE_PORT = 65534;
/** Pool prefixes larger than this are not expanded into proxy ARP entries. */
export const MAX_PROXY_ENTRIES = 256;

/** Plan the setup for `opts`; throws on invalid options (before anything is touched). */
export function planHostSetup(opts: HostSetupOptions): HostStep[] {
  validate(opts);
  const { tun } = opts;
  const steps: HostStep[] = [];

  if (opts.createTun) {
    steps.push({
      what: `create TUN ${tun}`,
      apply: ["ip", "tuntap", "add", "dev", tun, "mode", "tun"],
      undo: ["ip", "tuntap", "del", "dev", tun, "mode", "tun"],
    });
  }
  const mtu = opts.mtu ?? DEFAULT_MTU;
  steps.push({
    what: `set ${tun} MTU ${mtu}`,
    apply: ["ip", "link", "set", "dev", tun, "mtu", String(mtu)],
    undo: ["ip", "link", "set", "dev", tun, "mtu", PRIOR],
    prior: { kind: "mtu", dev: tun },
  });
  if (opts.txQueueLen !== undefined)
    steps.push({
      // The queue where the kernel holds packets until masq reads them: a burst longer than it
      // is dropped (tun's default is 500). The device is masq's own, so there is nothing to undo.
      what: `set ${tun} txqueuelen ${opts.txQueueLen}`,
      apply: ["ip", "link", "set", "dev", tun, "txqueuelen", String(opts.txQueueLen)],
      undo: [],
    });
  if (opts.rpsCpus !== undefined) {
    // A TUN write carries out, in the writer's context, most of the kernel's work on a forwarded
    // packet: routing, the outside device's transmit and, on a local veth, the receiver's protocol
    // processing. masq writes from one thread, so without RPS that work is capped at one CPU; with
    // it the kernel hands each flow (by hash) to a CPU of the mask. Also masq's own device: gone
    // with it, nothing to undo.
    const file = `/sys/class/net/${tun}/queues/rx-0/rps_cpus`;
    steps.push({
      what: `steer ${tun}'s received packets to CPUs ${opts.rpsCpus} (RPS)`,
      apply: ["sh", "-c", `echo ${opts.rpsCpus} > ${file}`],
      undo: [],
    });
  }
  if (opts.disableTunIpv6)
    // masq translates IPv4: without this the kernel's own IPv6 chatter (router and multicast
    // listener solicitations) reaches masq, to be dropped as packets of the wrong version.
    steps.push(sysctlStep(sysctlKey("net", "ipv6", "conf", tun, "disable_ipv6"), "1"));
  steps.push({
    what: `bring ${tun} up`,
    apply: ["ip", "link", "set", "dev", tun, "up"],
    undo: ["ip", "link", "set", "dev", tun, PRIOR],
    prior: { kind: "link-state", dev: tun },
  });

  // Without accept_local the kernel drops packets from tun0 whose source is one of its own
  // addresses (ICMP errors the gateway itself sends come back that way: traceroute shows '*').
  steps.push(sysctlStep(sysctlKey("net", "ipv4", "conf", tun, "accept_local"), "1"));
  // Even loose rp_filter drops packets written back on an address-less TUN; the effective
  // value is max(all, dev), so both must be 0.
  steps.push(sysctlStep(sysctlKey("net", "ipv4", "conf", tun, "rp_filter"), "0"));
  steps.push(sysctlStep(sysctlKey("net", "ipv4", "conf", "all", "rp_filter"), "0"));
  steps.push(sysctlStep(sysctlKey("net", "ipv4", "ip_forward"), "1"));

  if (opts.mode === "pool") planPool(opts, steps);
  else planInterface(opts, steps);
  return steps;
}

function planPool(opts: HostSetupOptions, steps: HostStep[]): void {
  const { tun } = opts;
  const table = String(opts.tables?.inside ?? DEFAULT_TABLES.inside);
  const pref = String(opts.prefs?.pool ?? DEFAULT_PREFS.pool);
  const prefixes = (opts.pool ?? []).map(parsePrefix);

  // Replies to the pool addresses: no interface holds them, so the main table sends them to masq.
  for (const p of prefixes) {
    const dst = `${p.addr}/${p.len}`;
    steps.push(
      cmdStep(
        `route ${dst} to ${tun}`,
        ["ip", "route", "add", dst, "dev", tun],
        ["ip", "route", "del", dst, "dev", tun],
      ),
    );
  }
  steps.push(defaultRouteStep(tun, table));
  // Rules last: only now may inside traffic be steered into the TUN.
  for (const lan of opts.inside) {
    steps.push(
      ruleStep(`steer traffic from ${lan} into ${tun}`, ["pref", pref, "iif", lan, "lookup", table]),
    );
  }
  if (opts.proxyArp ?? true) {
    for (const p of prefixes) {
      for (const addr of expandPrefix(p)) {
        steps.push(
          cmdStep(
            `answer ARP for ${addr} on ${opts.outside}`,
            ["ip", "neigh", "add", "proxy", addr, "dev", opts.outside],
            ["ip", "neigh", "del", "proxy", addr, "dev", opts.outside],
          ),
        );
      }
    }
  }
}

function planInterface(opts: HostSetupOptions, steps: HostStep[]): void {
  const { tun, outside: wan } = opts;
  const tin = String(opts.tables?.inside ?? DEFAULT_TABLES.inside);
  const tout = String(opts.tables?.outside ?? DEFAULT_TABLES.outside);
  const prefs = { ...DEFAULT_PREFS, ...opts.prefs };
  const range = opts.ports ?? DEFAULT_PORT_RANGE;
  const last = Math.min(range.last, MAX_RULE_PORT);

  steps.push(defaultRouteStep(tun, tin));
  steps.push(defaultRouteStep(tun, tout));

  // Move 'local' from 0 to prefs.local so the steering rules can come before it (replies to
  // masq's ports carry the gateway's own address and would otherwise be delivered locally).
  // Add the new rule first and, on undo, restore pref 0 before deleting it: at no moment is
  // there no 'local' rule, which would break every local delivery (ARP replies included).
  steps.push(
    cmdStep(
      `add 'local' rule at pref ${prefs.local}`,
      ["ip", "rule", "add", "pref", String(prefs.local), "lookup", "local"],
      ["ip", "rule", "del", "pref", String(prefs.local), "lookup", "local"],
    ),
  );
  steps.push(
    cmdStep(
      "remove 'local' rule at pref 0",
      ["ip", "rule", "del", "pref", "0", "lookup", "local"],
      ["ip", "rule", "add", "pref", "0", "lookup", "local"],
    ),
  );

  const clamped =
    last < range.last ? ` (${last + 1}-${range.last} stay with the kernel: iproute2 rejects 65535)` : "";
  steps.push(
    ruleStep(`steer TCP to ports ${range.first}-${last} from ${wan} into ${tun}${clamped}`, [
      "pref",
      String(prefs.tcp),
      "iif",
      wan,
      "ipproto",
      "tcp",
      "dport",
      `${range.first}-${last}`,
      "lookup",
      tout,
    ]),
  );
  // No port match for UDP: non-first fragments carry no port. masq writes back what it does not own.
  steps.push(
    ruleStep(`steer UDP from ${wan} into ${tun}`, [
      "pref",
      String(prefs.udp),
      "iif",
      wan,
      "ipproto",
      "udp",
      "lookup",
      tout,
    ]),
  );
  steps.push(
    ruleStep(`steer ICMP from ${wan} into ${tun}`, [
      "pref",
      String(prefs.icmp),
      "iif",
      wan,
      "ipproto",
      "icmp",
      "lookup",
      tout,
    ]),
  );
  if (opts.publicAddress !== undefined) {
    // Hairpinning: an inside host answering another's connection through the public address
    // sends to masq's ports on the gateway's own address, which 'local' would otherwise take.
    for (const lan of opts.inside)
      for (const proto of ["tcp", "udp"])
        steps.push(
          ruleStep(
            `steer ${proto.toUpperCase()} from ${lan} to ${opts.publicAddress} ports ${range.first}-${last} into ${tun}`,
            [
              "pref",
              String(HAIRPIN_RULE_PREF),
              "iif",
              lan,
              "to",
              `${opts.publicAddress}/32`,
              "ipproto",
              proto,
              "dport",
              `${range.first}-${last}`,
              "lookup",
              tin,
            ],
          ),
        );
  }
  for (const lan of opts.inside) {
    steps.push(
      ruleStep(`steer traffic from ${lan} into ${tun}`, [
        "pref",
        String(prefs.inside),
        "iif",
        lan,
        "lookup",
        tin,
      ]),
    );
  }
}

/** Interface mode: pref of the rules that steer forwarded ports (before 'local', like masq's own). */
export const FORWARD_RULE_PREF = 113;
/** Interface mode: pref of the rules for hairpinned traffic to masq's own ports. */
export const HAIRPIN_RULE_PREF = 114;

/**
 * Interface mode: the rules a forwarded port range needs, added and removed at runtime with the
 * forward. TCP from the outside interface (when masq's own range does not cover it), and, for
 * hairpinning, what the inside hosts send to the public address on those ports.
 */
export function forwardRuleSteps(opts: {
  proto: "tcp" | "udp";
  first: number;
  last: number;
  outside: string;
  inside: string[];
  publicAddress: string;
  /** masq's own port range (already steered). */
  ports: PortRange;
  tables?: { inside?: number; outside?: number };
  pref?: number;
}): HostStep[] {
  const { first, last, proto } = opts;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || first > last || last > 65535)
    throw new Error(`invalid port range ${first}-${last}`);
  if (last > MAX_RULE_PORT)
    throw new Error(`port ${MAX_RULE_PORT + 1} cannot be matched by an ip rule (iproute2 rejects it)`);
  const ports = first === last ? String(first) : `${first}-${last}`;
  const pref = String(opts.pref ?? FORWARD_RULE_PREF);
  const tin = String(opts.tables?.inside ?? DEFAULT_TABLES.inside);
  const tout = String(opts.tables?.outside ?? DEFAULT_TABLES.outside);
  const steps: HostStep[] = [];
  const own = first >= opts.ports.first && last <= Math.min(opts.ports.last, MAX_RULE_PORT);
  if (proto === "tcp" && !own)
    steps.push(
      ruleStep(`steer forwarded TCP ${ports} from ${opts.outside} into masq`, [
        "pref",
        pref,
        "iif",
        opts.outside,
        "ipproto",
        "tcp",
        "dport",
        ports,
        "lookup",
        tout,
      ]),
    );
  for (const lan of opts.inside)
    steps.push(
      ruleStep(
        `steer forwarded ${proto.toUpperCase()} ${ports} from ${lan} to ${opts.publicAddress} into masq`,
        [
          "pref",
          pref,
          "iif",
          lan,
          "to",
          `${opts.publicAddress}/32`,
          "ipproto",
          proto,
          "dport",
          ports,
          "lookup",
          tin,
        ],
      ),
    );
  return steps;
}

function cmdStep(what: string, apply: string[], undo: string[]): HostStep {
  return { what, apply, undo };
}

function defaultRouteStep(tun: string, table: string): HostStep {
  return cmdStep(
    `default route via ${tun} in table ${table}`,
    ["ip", "route", "add", "default", "dev", tun, "table", table],
    ["ip", "route", "del", "default", "dev", tun, "table", table],
  );
}

function ruleStep(what: string, selector: string[]): HostStep {
  return cmdStep(what, ["ip", "rule", "add", ...selector], ["ip", "rule", "del", ...selector]);
}

function sysctlStep(key: string, value: string): HostStep {
  return {
    what: `sysctl ${key}=${value}`,
    apply: ["sysctl", "-q", "-w", `${key}=${value}`],
    undo: ["sysctl", "-q", "-w", `${key}=${PRIOR}`],
    prior: { kind: "sysctl", key },
  };
}

/** The sysfs CPU mask ("3", "ff,ffffffff") of CPUs 0 to count-1: hex, a comma every 32 bits. */
export function cpuMask(count: number): string {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`cpuMask: bad CPU count ${count}`);
  const hex = ((1n << BigInt(count)) - 1n).toString(16);
  const groups: string[] = [];
  for (let end = hex.length; end > 0; end -= 8) groups.unshift(hex.slice(Math.max(0, end - 8), end));
  return groups.join(",");
}

/** A sysctl name; uses '/' separators when a part (an interface like eth0.100) contains a dot. */
export function sysctlKey(...parts: string[]): string {
  return parts.some((p) => p.includes(".")) ? parts.join("/") : parts.join(".");
}

/** Return a copy of `argv` with PRIOR replaced by `value`. */
export function fillPrior(argv: readonly string[], value: string): string[] {
  return argv.map((a) => a.replaceAll(PRIOR, value));
}

// ---- validation and address helpers ----

const IFNAME = /^[A-Za-z0-9_.:@+-]{1,15}$/;

function validate(opts: HostSetupOptions): void {
  const iface = (name: string, role: string) => {
    // Names reach argv (no shell), but '/' or spaces would still confuse sysctl keys and ip.
    if (!IFNAME.test(name) || name === "." || name === "..")
      throw new Error(`invalid ${role} interface name ${JSON.stringify(name)}`);
  };
  iface(opts.tun, "TUN");
  iface(opts.outside, "outside");
  if (opts.inside.length === 0) throw new Error("at least one inside interface is needed");
  for (const lan of opts.inside) {
    iface(lan, "inside");
    if (lan === opts.outside) throw new Error(`interface ${lan} cannot be both inside and outside`);
    if (lan === opts.tun) throw new Error(`interface ${lan} cannot be both inside and the TUN`);
  }
  const mtu = opts.mtu ?? DEFAULT_MTU;
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`invalid MTU ${mtu} (576-65535)`);

  for (const [name, t] of Object.entries(opts.tables ?? {})) {
    // 0 is 'unspec'; 253-255 are default, main and local.
    if (t === undefined) continue;
    if (!Number.isInteger(t) || t < 1 || t > 0xffffffff || (t >= 253 && t <= 255))
      throw new Error(`invalid ${name} routing table ${t} (1-252 or 256-4294967295)`);
  }
  const prefs = { ...DEFAULT_PREFS, ...opts.prefs };
  for (const [name, p] of Object.entries(prefs)) {
    if (!Number.isInteger(p) || p < 1 || p > 32765)
      throw new Error(`invalid ${name} rule pref ${p} (1-32765)`);
  }

  if (opts.mode === "pool") {
    if (!opts.pool || opts.pool.length === 0) throw new Error("pool mode needs at least one pool address");
    for (const p of opts.pool.map(parsePrefix)) {
      if ((opts.proxyArp ?? true) && 2 ** (32 - p.len) > MAX_PROXY_ENTRIES)
        throw new Error(
          `pool ${p.addr}/${p.len} is too large for proxy ARP entries (at most ${MAX_PROXY_ENTRIES} addresses); ` +
            "route it to this host upstream and set proxyArp to false",
        );
    }
  } else if (opts.mode === "interface") {
    const t = opts.tables ?? {};
    if ((t.inside ?? DEFAULT_TABLES.inside) === (t.outside ?? DEFAULT_TABLES.outside))
      throw new Error("the inside and outside routing tables must differ");
    const r = opts.ports ?? DEFAULT_PORT_RANGE;
    if (
      !Number.isInteger(r.first) ||
      !Number.isInteger(r.last) ||
      r.first < 1 ||
      r.first > r.last ||
      r.last > 65535
    )
      throw new Error(`invalid port range ${r.first}-${r.last}`);
    if (r.first > MAX_RULE_PORT)
      throw new Error(`port range ${r.first}-${r.last} cannot be matched by an ip rule (65535 is rejected)`);
    if (!(prefs.tcp < prefs.local && prefs.udp < prefs.local && prefs.icmp < prefs.local))
      throw new Error(`the TCP/UDP/ICMP steering prefs must come before the 'local' pref ${prefs.local}`);
    if (prefs.inside <= prefs.local)
      throw new Error(`the inside pref must come after the 'local' pref ${prefs.local}`);
  } else {
    throw new Error(`unknown mode ${JSON.stringify((opts as { mode: unknown }).mode)}`);
  }
}

export interface Prefix {
  addr: string;
  len: number;
}

/** Parse "a.b.c.d" (as /32) or "a.b.c.d/len"; host bits must be zero. */
export function parsePrefix(text: string): Prefix {
  const [addr, lenText, ...rest] = text.split("/");
  const len = lenText === undefined ? 32 : Number(lenText);
  const n = parseIPv4(addr);
  if (n === undefined || rest.length > 0 || !Number.isInteger(len) || len < 0 || len > 32 || lenText === "")
    throw new Error(`invalid IPv4 address or prefix ${JSON.stringify(text)}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  if ((n & ~mask) >>> 0 !== 0)
    throw new Error(
      `prefix ${text} has host bits set (did you mean ${formatIPv4((n & mask) >>> 0)}/${len}?)`,
    );
  return { addr, len };
}

/** Every address of a prefix (callers bound the size). */
export function expandPrefix(p: Prefix): string[] {
  const base = parseIPv4(p.addr)!;
  const out: string[] = [];
  for (let i = 0; i < 2 ** (32 - p.len); i++) out.push(formatIPv4((base + i) >>> 0));
  return out;
}

export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
