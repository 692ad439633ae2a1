// The TUN I/O path alone, "syscalls" against "uring" (datapath_io): the CPU time one thread
// spends per 64-byte packet written with writeBatch and per packet read, the kernel's own work on
// the packet in that thread included. CPU per packet rather than packets per second, so that
// other work on a shared machine changes the figures less than it changes a rate.
//   - write: batches of 256 IPv4/UDP packets to a blackhole route for 2 s (the kernel takes each
//     in, routes it and drops it: the same work on both paths);
//   - read: 8000 datagrams queued on the TUN while the loop is blocked (a Python sender), then
//     drained; 10 times;
//   - one UDP flow's datagrams (through io_uring, on a TUN with a virtio-net header and USO),
//     routed out of a veth that cuts super-packets into datagrams (tx-udp-segmentation off),
//     whose peer drops each one as it arrives (nftables): written one by one, and merged into
//     super-packets as the datapath merges them (src/datapath/udp-coalesce.ts). Per datagram.
// Each path runs in a fresh network namespace, the two alternating, --rounds times.
//
// Usage: npm run bench:tun-io [-- --rounds N] [-- --json] [-- --prefix NAME]
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { coalesceUdpWrites } from "../src/datapath/udp-coalesce.ts";
import { TunDevice, type TunIoSetting } from "../src/io/tun.ts";
import { Lab } from "../src/lab/netns.ts";
import { fold, pseudoHeaderSum } from "../src/packet/checksum.ts";
import { VIRTIO_NET_HDR_BYTES } from "../src/packet/virtio-net.ts";

const BATCH = 256;
const PACKET = 64;
const WRITE_MS = 2000;
const FILL = 8000;
const FILLS = 10;

interface Figures {
  io: string;
  writeKpps: number;
  writeCpuUs: number;
  readCpuUs: number;
  readWakeups: number;
  uringEnters: number;
  /** One flow's datagrams, µs CPU each: written one by one, and merged (io_uring only). */
  flowEachCpuUs?: number;
  flowMergedCpuUs?: number;
  /** Datagrams per write when merged. */
  flowMergedPerWrite?: number;
}

const { values: opt } = parseArgs({
  options: {
    child: { type: "string" },
    rounds: { type: "string", default: "3" },
    json: { type: "boolean", default: false },
    prefix: { type: "string", default: "masqtunio" },
  },
});

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** One path's figures, measured in the namespace this process runs in. */
async function measure(io: TunIoSetting): Promise<Figures> {
  const dev = TunDevice.open({ name: "tunio0", io });
  const sh = (cmd: string) => execFileSync("sh", ["-c", cmd], { encoding: "utf8" });
  sh(
    "ip link set lo up && ip link set tunio0 up txqueuelen 10000 && ip addr add 10.50.0.1/24 dev tunio0" +
      " && ip route add blackhole 10.60.0.0/16 && sysctl -qw net.ipv4.ip_forward=1",
  );
  const { buf, meta } = udpBatch();
  let written = 0;
  const w0 = cpuUs();
  const t0 = performance.now();
  while (performance.now() - t0 < WRITE_MS) written += dev.writeBatch(buf, meta, BATCH);
  const writeCpu = cpuUs() - w0;
  const writeMs = performance.now() - t0;

  let got = 0;
  let until = 0;
  let readCpu = 0;
  let from = 0;
  let drained: (() => void) | undefined;
  dev.start((_b, _m, count) => {
    got += count;
    if (drained && got >= until) {
      readCpu += cpuUs() - from;
      drained();
      drained = undefined;
    }
  });
  const before = dev.stats();
  const send = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(${FILL}): s.sendto(b"x"*${PACKET - 28},("10.50.0.9",9))`;
  for (let i = 0; i < FILLS; i++) {
    // The loop is blocked while the sender runs: the datagrams wait in the TUN's queue.
    execFileSync("python3", ["-c", send]);
    until = got + FILL;
    from = cpuUs();
    await new Promise<void>((resolve) => {
      drained = resolve;
    });
  }
  const after = dev.stats();
  dev.close();
  const figures: Figures = {
    io: dev.io,
    writeKpps: written / writeMs,
    writeCpuUs: writeCpu / written,
    readCpuUs: readCpu / (FILL * FILLS),
    readWakeups: after.rxWakeups - before.rxWakeups,
    uringEnters: after.uringEnters,
  };
  return io === "uring" ? { ...figures, ...measureOneFlow(sh) } : figures;
}

/** One flow's datagrams written one by one and merged, on a vnet TUN with USO (see the top). */
function measureOneFlow(sh: (cmd: string) => string): Partial<Figures> {
  const dev = TunDevice.open({ name: "tunio1", io: "uring", vnetHdr: true });
  if (!dev.coalescesUdp) {
    dev.close();
    return {};
  }
  sh(
    "ip link set tunio1 up txqueuelen 10000 && ip addr add 10.51.0.1/24 dev tunio1" +
      " && ip link add va type veth peer name vb && ethtool -K va tx-udp-segmentation off >/dev/null" +
      " && ip link set va up && ip link set vb up && ip route add 10.61.0.0/16 dev va" +
      " && nft add table ip sink && nft add chain ip sink pre '{ type filter hook prerouting priority raw; }'" +
      " && nft add rule ip sink pre iifname vb drop" +
      " && ip neigh replace 10.61.0.9 lladdr $(cat /sys/class/net/vb/address) dev va nud permanent",
  );
  const pristine = udpBatch(true);
  const buf = pristine.buf.slice();
  const meta = pristine.meta.slice();
  const vbPackets = () => Number(sh("cat /sys/class/net/vb/statistics/rx_packets"));
  const run = (merge: boolean): { cpuUs: number; perWrite: number } => {
    const arrived = vbPackets();
    let datagrams = 0;
    let writes = 0;
    const c0 = cpuUs();
    const t0 = performance.now();
    while (performance.now() - t0 < WRITE_MS) {
      // Merging rewrites headers and meta in place: every batch starts from the same packets.
      buf.set(pristine.buf);
      meta.set(pristine.meta);
      const appended = merge ? coalesceUdpWrites(buf, meta, BATCH, VIRTIO_NET_HDR_BYTES) : 0;
      datagrams += dev.writeBatch(buf, meta, BATCH);
      writes += BATCH - appended;
    }
    const cpu = cpuUs() - c0;
    // Each datagram must have crossed the veth on its own, or the figure measures something else.
    const crossed = vbPackets() - arrived;
    if (crossed < datagrams * 0.99)
      throw new Error(`${datagrams} datagrams written, ${crossed} reached the veth's peer (merge: ${merge})`);
    return { cpuUs: cpu / datagrams, perWrite: datagrams / writes };
  };
  const each = run(false);
  const merged = run(true);
  dev.close();
  return { flowEachCpuUs: each.cpuUs, flowMergedCpuUs: merged.cpuUs, flowMergedPerWrite: merged.perWrite };
}

/**
 * BATCH IPv4/UDP packets of PACKET bytes with their meta pairs: 10.50.0.2 -> 10.60.0.x (a flow
 * each), or with `oneFlow` 10.51.0.2 -> 10.61.0.9, behind a virtio-net header marking the UDP
 * checksum partial (as the kernel hands them to masq).
 */
function udpBatch(oneFlow = false): { buf: Uint8Array; meta: Uint32Array } {
  const stride = 128;
  const h = oneFlow ? VIRTIO_NET_HDR_BYTES : 0;
  const buf = new Uint8Array(BATCH * stride);
  const meta = new Uint32Array(BATCH * 2);
  for (let i = 0; i < BATCH; i++) {
    const at = i * stride;
    if (oneFlow) buf.set([1, 0, 28, 0, 0, 0, 20, 0, 6, 0], at); // NEEDS_CSUM at 20 + 6
    const p = buf.subarray(at + h, at + h + PACKET);
    const net = oneFlow ? 51 : 50;
    p.set([0x45, 0, 0, PACKET, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, net, 0, 2, 10, net + 10, 0, oneFlow ? 9 : i]);
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += (p[k] << 8) | p[k + 1];
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    p[10] = (~sum >>> 8) & 0xff;
    p[11] = ~sum & 0xff;
    p.set([0x30, 0x39, 0x30, 0x39, 0, PACKET - 20, 0, 0], 20);
    if (oneFlow) {
      const partial = fold(
        pseudoHeaderSum((10 << 24) | (51 << 16) | 2, (10 << 24) | (61 << 16) | 9, 17, PACKET - 20),
      );
      p[26] = partial >>> 8;
      p[27] = partial & 0xff;
    }
    meta[2 * i] = at;
    meta[2 * i + 1] = h + PACKET;
  }
  return { buf, meta };
}

if (opt.child !== undefined) {
  process.stdout.write(`${JSON.stringify(await measure(opt.child as TunIoSetting))}\n`);
  process.exit(0);
}

const rounds = Number(opt.rounds);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error("--rounds must be 1-20");
const load = loadavg().map((l) => l.toFixed(2));
const runs: Figures[] = [];
const lab = new Lab({ prefix: opt.prefix });
try {
  for (let r = 0; r < rounds; r++)
    for (const io of r % 2 === 0 ? (["syscalls", "uring"] as const) : (["uring", "syscalls"] as const)) {
      const ns = await lab.addNamespace(`${io[0]}${r}`);
      const out = await lab.run(
        ns,
        [process.execPath, "--import", "tsx", import.meta.filename, "--child", io],
        {
          timeoutMs: 120_000,
        },
      );
      const f = JSON.parse(out) as Figures;
      if (f.io !== io) throw new Error(`asked for ${io}, ran ${f.io}`);
      runs.push(f);
      if (!opt.json)
        process.stdout.write(
          `[${r + 1}/${rounds}] ${io.padEnd(8)} write ${f.writeCpuUs.toFixed(2)} µs CPU/packet (${f.writeKpps.toFixed(0)} kpps), read ${f.readCpuUs.toFixed(2)} µs CPU/packet (${f.readWakeups} wake-ups, ${f.uringEnters} io_uring_enter)${f.flowEachCpuUs !== undefined ? `; one flow ${f.flowEachCpuUs.toFixed(2)} µs CPU/datagram one by one, ${f.flowMergedCpuUs?.toFixed(2)} merged (${f.flowMergedPerWrite?.toFixed(1)} per write)` : ""}\n`,
        );
    }
} finally {
  await lab.destroy();
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const of = (io: string, k: "writeCpuUs" | "readCpuUs" | "writeKpps") =>
  median(runs.filter((f) => f.io === io).map((f) => f[k]));
const summary = {
  load_start: load.join(" "),
  load_end: loadavg()
    .map((l) => l.toFixed(2))
    .join(" "),
  write_cpu_us: { syscalls: of("syscalls", "writeCpuUs"), uring: of("uring", "writeCpuUs") },
  write_kpps: { syscalls: of("syscalls", "writeKpps"), uring: of("uring", "writeKpps") },
  read_cpu_us: { syscalls: of("syscalls", "readCpuUs"), uring: of("uring", "readCpuUs") },
  one_flow_cpu_us: {
    each: median(runs.flatMap((f) => (f.flowEachCpuUs !== undefined ? [f.flowEachCpuUs] : []))),
    merged: median(runs.flatMap((f) => (f.flowMergedCpuUs !== undefined ? [f.flowMergedCpuUs] : []))),
  },
};
if (opt.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
else
  process.stdout.write(
    [
      "",
      `TUN I/O, 64 B packets, medians of ${rounds} round(s); load ${summary.load_start} at start, ${summary.load_end} at end`,
      "                           syscalls    uring   uring/syscalls",
      `write, µs CPU per packet     ${summary.write_cpu_us.syscalls.toFixed(2).padStart(6)}   ${summary.write_cpu_us.uring.toFixed(2).padStart(6)}   ${(summary.write_cpu_us.uring / summary.write_cpu_us.syscalls).toFixed(2).padStart(6)}`,
      `write, kpps (one thread)     ${summary.write_kpps.syscalls.toFixed(0).padStart(6)}   ${summary.write_kpps.uring.toFixed(0).padStart(6)}   ${(summary.write_kpps.uring / summary.write_kpps.syscalls).toFixed(2).padStart(6)}`,
      `read, µs CPU per packet      ${summary.read_cpu_us.syscalls.toFixed(2).padStart(6)}   ${summary.read_cpu_us.uring.toFixed(2).padStart(6)}   ${(summary.read_cpu_us.uring / summary.read_cpu_us.syscalls).toFixed(2).padStart(6)}`,
      "",
      "one UDP flow through io_uring    one by one   merged   merged/one by one",
      summary.one_flow_cpu_us.each === undefined
        ? "  (no USO on this kernel: nothing is merged)"
        : `write, µs CPU per datagram     ${summary.one_flow_cpu_us.each.toFixed(2).padStart(6)}     ${(summary.one_flow_cpu_us.merged ?? Number.NaN).toFixed(2).padStart(6)}   ${((summary.one_flow_cpu_us.merged ?? Number.NaN) / summary.one_flow_cpu_us.each).toFixed(2).padStart(6)}`,
      "",
    ].join("\n"),
  );
