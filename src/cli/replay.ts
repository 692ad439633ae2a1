// `masq replay`: offline translation of a capture. The input is what the TUNs would deliver to masq
// (inside hosts' packets, and replies addressed to the public address), e.g. `tcpdump -i any -y
// LINUX_SLL2 -Q out -w in.pcap "ifindex <masq0's> or ifindex <masq0-out's>"` on a running gateway
// (on a TUN, "out" is towards masq). A capture has no arrival side: the source address decides
// inside from outside (SIDE_BY_ADDRESS), as it does for legitimate traffic live. A LAN-side capture
// serves for outbound traffic only: its replies are already translated back to inside addresses.
// Every packet goes through a NatEngine configured as `masq run` would be
// in pool mode, with the capture's timestamps as the engine clock, and what masq would write back
// to the TUN goes to the output pcap. Deterministic: the same input gives the same output bytes,
// which is what the golden tests rely on.
import { readFileSync, writeFileSync } from "node:fs";
import { defaultRunConfig, FILTERINGS, type RunConfig } from "../control/config.ts";
import { checkAddress, checkPrefix, parsePorts } from "../control/config-addresses.ts";
import { ConfigError } from "../control/config-error.ts";
import { engineConfigFor } from "../control/engine-config.ts";
import { expandPrefix, parsePrefix } from "../host/plan.ts";
import { PcapFormatError, type PcapReadCounters, PcapReader, PcapWriter } from "../io/pcap.ts";
import { DEFAULT_POOL_PORTS, type EngineConfig, type Filtering } from "../nat/config.ts";
import { C_DROPPED, D_ENGINE_ERROR } from "../nat/counters.ts";
import { FORWARD, NatEngine, REPLY } from "../nat/engine.ts";
import { formatIpv4 } from "../packet/addr.ts";
import { checksum, fold, pseudoHeaderSum, readU16, readU32 } from "../packet/checksum.ts";
import { IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";

/** Inside networks when none are named: the private ranges of RFC 1918. */
export const DEFAULT_REPLAY_INSIDE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
/** The public address when none is named: the lab's pool address (TEST-NET-2, RFC 5737). */
export const DEFAULT_REPLAY_ADDRESS = "198.51.100.100";
/** Pool addresses beyond this need a routed prefix upstream; same bound as `masq run`. */
const MAX_POOL_ADDRESSES = 256;

export interface ReplayFlags {
  /** Inside prefixes ("192.168.0.0/24"); repeatable or comma-separated. */
  inside?: string[];
  /** Public (pool) addresses or prefixes masq owns. */
  address?: string[];
  ports?: string;
  filtering?: string;
  /** The live run's port seed (`masq stats --json` → portSeed); default 0. */
  portSeed?: string;
}

export interface ReplaySummary {
  input: {
    linkType: number;
    nanoseconds: boolean;
    /** IPv4 packets handed to the engine. */
    packets: number;
    /** Records skipped before the engine: cut by the snaplen, or not IPv4. */
    skipped: { snapTruncated: number; notIpv4: number };
    /** TCP/UDP packets whose checksum field held the pseudo-header sum (an offloading TUN's capture). */
    partialChecksums: number;
    /** Why reading stopped early (truncated or corrupt file); absent when the file was whole. */
    damage?: { offset: number; record: number; problem: string };
  };
  /** Packets written to the output, by why they were written. */
  output: {
    packets: number;
    /** FORWARD verdicts: translated (or passed through) packets. */
    forwarded: number;
    /** REPLY verdicts: ICMP messages the engine built. */
    replies: number;
    /** Held fragments released when their first fragment came. */
    released: number;
  };
  /** Engine events of note (translated out/in, hairpinned, flows created, ...). */
  translated: { out: number; in: number; hairpinned: number; passthrough: number };
  /** Drops by reason (only reasons that occurred), including fragments that timed out. */
  dropped: Record<string, number>;
  droppedTotal: number;
  /** Fragments still waiting for their first fragment when the capture ended. */
  heldAtEnd: number;
  flowsCreated: number;
  /** The configuration used, for the record. */
  config: { inside: string[]; addresses: string[]; ports: string; filtering: Filtering };
}

/** The engine configuration `masq run` would build in pool mode from these flags. */
export function replayConfig(flags: ReplayFlags): { engine: EngineConfig; run: RunConfig; inside: string[] } {
  const split = (list: string[] | undefined) =>
    (list ?? [])
      .flatMap((s) => s.split(","))
      .map((s) => s.trim())
      .filter((s) => s !== "");
  const run = defaultRunConfig();
  const inside = split(flags.inside).map((p) => checkPrefix(p, "--inside"));
  const addresses = split(flags.address).map((a) => checkAddress(a, "--address"));
  run.addresses = addresses.length > 0 ? addresses : [DEFAULT_REPLAY_ADDRESS];
  run.insideNetworks = inside.length > 0 ? inside : DEFAULT_REPLAY_INSIDE;
  // Pool mode's own range unless given, as `masq run` would have it.
  run.ports = flags.ports !== undefined ? parsePorts(flags.ports, "--ports") : { ...DEFAULT_POOL_PORTS };
  run.portSeed = 0;
  if (flags.portSeed !== undefined) {
    const seed = Number(flags.portSeed);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
      throw new ConfigError(
        "--port-seed",
        `must be a whole number from 0 to 4294967295 (got ${flags.portSeed})`,
      );
    run.portSeed = seed;
  }
  if (flags.filtering !== undefined) {
    if (!(FILTERINGS as readonly string[]).includes(flags.filtering))
      throw new ConfigError(
        "--filtering",
        `must be one of ${FILTERINGS.join(", ")} (got ${flags.filtering})`,
      );
    run.filtering = flags.filtering as Filtering;
  }
  const insideNetworks = run.insideNetworks.map((p) => {
    try {
      const { addr, len } = parsePrefix(p);
      return `${addr}/${len}`;
    } catch (err) {
      throw new ConfigError("--inside", (err as Error).message);
    }
  });
  let publicAddresses: string[];
  try {
    publicAddresses = run.addresses.flatMap((a) => expandPrefix(parsePrefix(a)));
  } catch (err) {
    throw new ConfigError("--address", (err as Error).message);
  }
  if (publicAddresses.length > MAX_POOL_ADDRESSES)
    throw new ConfigError(
      "--address",
      `${publicAddresses.length} addresses; at most ${MAX_POOL_ADDRESSES} are supported`,
    );
  const engine = engineConfigFor(run, { mode: "pool", publicAddresses, insideNetworks, mtu: 1500 });
  return { engine, run, inside: insideNetworks };
}

/**
 * Replays a pcap file's bytes through a fresh engine; returns the output pcap bytes and the
 * summary. Never throws for damaged records (they are counted); throws PcapFormatError only when
 * the file header is unusable.
 */
export function replayBytes(
  input: Uint8Array,
  config: EngineConfig,
): { output: Uint8Array; summary: Omit<ReplaySummary, "config"> } {
  const reader = new PcapReader(input);
  const engine = new NatEngine(config);
  const writer = new PcapWriter({ initialBytes: input.length + 4096 });
  // The engine rewrites in place; a scratch copy keeps the input intact and leaves room should a
  // rewrite ever lengthen a packet.
  const scratch = new Uint8Array(65536 + 4096);
  let forwarded = 0;
  let replies = 0;
  let released = 0;
  let partials = 0;
  while (reader.next()) {
    // No IPv4 packet is longer than 65535 bytes; more in a record is link-layer padding or junk.
    const len = Math.min(reader.ipLen, 65535);
    scratch.set(reader.data.subarray(reader.ipOff, reader.ipOff + len), 0);
    const tsSec = reader.tsSec;
    const tsUsec = reader.tsUsec;
    let v: number;
    try {
      const partial = holdsPartialChecksum(scratch, 0, len);
      if (partial) partials++;
      v = engine.process(scratch, 0, len, reader.timeMs, partial);
    } catch {
      // The engine promises not to throw on bad input; should it ever, that packet is counted
      // under the engine's own error reason and the replay goes on.
      engine.counters[D_ENGINE_ERROR]++;
      engine.counters[C_DROPPED]++;
      continue;
    }
    if (v === FORWARD) {
      writer.write(scratch, 0, engine.outLen, tsSec, tsUsec);
      forwarded++;
    } else if (v === REPLY) {
      writer.write(engine.replyBuf, 0, engine.outLen, tsSec, tsUsec);
      replies++;
    }
    // DROP is counted by the engine; HELD fragments come back through takePending().
    for (let p = engine.takePending(); p !== undefined; p = engine.takePending()) {
      writer.write(p, 0, p.length, tsSec, tsUsec);
      released++;
    }
    // RFC 5382 REQ-4 answers (when configured) that came due on the capture's clock.
    for (let p = engine.takeAnswer(); p !== undefined; p = engine.takeAnswer()) {
      writer.write(p, 0, p.length, tsSec, tsUsec);
      replies++;
    }
  }
  const stats = engine.stats();
  const c = stats.counters;
  const dropped: Record<string, number> = {};
  for (const [name, n] of Object.entries(c))
    if (name.startsWith("drop_") && n > 0) dropped[name.slice("drop_".length)] = n;
  const rc: PcapReadCounters = reader.counters;
  return {
    output: writer.bytes(),
    summary: {
      input: {
        linkType: reader.linkType,
        nanoseconds: reader.nanoseconds,
        packets: rc.packets,
        skipped: { snapTruncated: rc.snapTruncated, notIpv4: rc.notIpv4 },
        partialChecksums: partials,
        ...(reader.damage ? { damage: { ...reader.damage } } : {}),
      },
      output: { packets: writer.packets, forwarded, replies, released },
      translated: {
        out: c.translated_out,
        in: c.translated_in,
        hairpinned: c.hairpinned,
        passthrough: c.passthrough,
      },
      dropped,
      droppedTotal: c.dropped,
      heldAtEnd: stats.heldFragments,
      flowsCreated: c.flows_created,
    },
  };
}

/**
 * A capture of an offloading TUN (IFF_VNET_HDR, `masq run`'s default) holds TCP/UDP packets the
 * kernel marked "needs checksum": the field carries the pseudo-header sum, not the checksum, and
 * the virtio-net header that said so is not in the capture. Recognising that value lets replay
 * rewrite them as the live datapath did (it adjusts a partial sum differently from a checksum).
 */
export function holdsPartialChecksum(b: Uint8Array, off: number, len: number): boolean {
  if (len < 20 || b[off] >> 4 !== 4 || (readU16(b, off + 6) & 0x3fff) !== 0) return false;
  const proto = b[off + 9];
  const at = proto === IPPROTO_TCP ? 16 : proto === IPPROTO_UDP ? 6 : -1;
  if (at < 0) return false;
  const hl = (b[off] & 0x0f) << 2;
  const total = readU16(b, off + 2);
  if (total > len || total < hl + at + 2) return false;
  const l4 = total - hl;
  const pseudo = pseudoHeaderSum(readU32(b, off + 12), readU32(b, off + 16), proto, l4);
  if (readU16(b, off + hl + at) !== fold(pseudo)) return false;
  // A real checksum equals the pseudo-header sum by chance once in 65536 packets: it verifies.
  return checksum(b, off + hl, l4, pseudo) !== 0;
}

export function formatReplaySummary(s: ReplaySummary): string {
  const lines: string[] = [];
  const i = s.input;
  const skipped = i.skipped.snapTruncated + i.skipped.notIpv4;
  lines.push(
    `packets in:   ${i.packets}` +
      (skipped > 0
        ? ` (skipped before the engine: ${i.skipped.snapTruncated} cut by the snaplen, ${i.skipped.notIpv4} not IPv4)`
        : ""),
  );
  if (i.partialChecksums > 0)
    lines.push(
      `              ${i.partialChecksums} with partial checksums (offload capture), rewritten as such`,
    );
  const t = s.translated;
  lines.push(
    `translated:   ${t.out + t.in + t.hairpinned} (outbound ${t.out}, inbound ${t.in}, hairpinned ${t.hairpinned})` +
      (t.passthrough > 0 ? `, passed through ${t.passthrough}` : ""),
  );
  const o = s.output;
  lines.push(
    `written:      ${o.packets} (forwarded ${o.forwarded}, ICMP replies ${o.replies}, released fragments ${o.released})`,
  );
  lines.push(`dropped:      ${s.droppedTotal}`);
  const reasons = Object.entries(s.dropped).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const width = Math.max(0, ...reasons.map(([r]) => r.length));
  for (const [reason, n] of reasons) lines.push(`  ${reason.padEnd(width)}  ${n}`);
  if (s.heldAtEnd > 0) lines.push(`held at end:  ${s.heldAtEnd} fragments never completed`);
  lines.push(`flows:        ${s.flowsCreated} created`);
  lines.push(
    `config:       pool ${s.config.addresses.join(",")}, inside ${s.config.inside.join(",")}, ports ${s.config.ports}, ${s.config.filtering} filtering`,
  );
  if (i.damage)
    lines.push(
      `input damaged: ${i.damage.problem} (record ${i.damage.record}, byte ${i.damage.offset}); the rest was not read`,
    );
  return `${lines.join("\n")}\n`;
}

export interface ReplayIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

const processIo: ReplayIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
};

/**
 * The command: reads `inPath`, writes `outPath`, prints the summary; resolves with the exit code.
 * 2 when the input cannot be read or is not pcap, the output cannot be written, or the input is
 * damaged (the output then holds everything before the damage). Bad flags throw ConfigError.
 */
export async function runReplay(
  inPath: string,
  outPath: string,
  flags: ReplayFlags & { json?: boolean },
  io: ReplayIo = processIo,
): Promise<number> {
  const { engine, run, inside } = replayConfig(flags);
  let input: Uint8Array;
  try {
    input = readFileSync(inPath);
  } catch (err) {
    io.stderr(`masq: ${inPath}: cannot read the input pcap (${describeFsError(err)})\n`);
    return 2;
  }
  let result: ReturnType<typeof replayBytes>;
  try {
    result = replayBytes(input, engine);
  } catch (err) {
    if (err instanceof PcapFormatError) {
      io.stderr(`masq: ${inPath}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  try {
    writeFileSync(outPath, result.output);
  } catch (err) {
    io.stderr(`masq: ${outPath}: cannot write the output pcap (${describeFsError(err)})\n`);
    return 2;
  }
  const summary: ReplaySummary = {
    ...result.summary,
    config: {
      inside,
      addresses: engine.outside.map(formatIpv4),
      ports: `${run.ports.first}-${run.ports.last}`,
      filtering: run.filtering,
    },
  };
  io.stdout(flags.json ? `${JSON.stringify(summary, null, 2)}\n` : formatReplaySummary(summary));
  const d = summary.input.damage;
  if (d) {
    io.stderr(
      `masq: ${inPath}: ${d.problem} (record ${d.record}, byte ${d.offset}); ${summary.input.packets} packets before it were replayed into ${outPath}\n`,
    );
    return 2;
  }
  return 0;
}

function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    default:
      return e.code ?? String(err);
  }
}
