// The TUN I/O path alone, "syscalls" against "uring" (datapath_io): the CPU time one thread
// spends per 64-byte packet written with writeBatch and per packet read, the kernel's own work on
// the packet in that thread included. CPU per packet rather than packets per second, so that
// other work on a shared machine changes the figures less than it changes a rate.
//   - write: batches of 256 IPv4/UDP packets to a blackhole route for 2 s (the kernel takes each
//     in, routes it and drops it: the same work on both paths);
//   - read: 8000 datagrams queued on the TUN while the loop is blocked (a Python sender), then
//     drained; 10 times.
// Each path runs in a fresh network namespace, the two alternating, --rounds times.
//
// Usage: npm run bench:tun-io [-- --rounds N] [-- --json] [-- --prefix NAME]
import { execFileSync } from "node:child_process";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { TunDevice, type TunIoSetting } from "../src/io/tun.ts";
import { Lab } from "../src/lab/netns.ts";

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
  return {
    io: dev.io,
    writeKpps: written / writeMs,
    writeCpuUs: writeCpu / written,
    readCpuUs: readCpu / (FILL * FILLS),
    readWakeups: after.rxWakeups - before.rxWakeups,
    uringEnters: after.uringEnters,
  };
}

/** BATCH IPv4/UDP packets 10.50.0.2 -> 10.60.0.x of PACKET bytes, with their meta pairs. */
function udpBatch(): { buf: Uint8Array; meta: Uint32Array } {
  const stride = 128;
  const buf = new Uint8Array(BATCH * stride);
  const meta = new Uint32Array(BATCH * 2);
  for (let i = 0; i < BATCH; i++) {
    const p = buf.subarray(i * stride, i * stride + PACKET);
    p.set([0x45, 0, 0, PACKET, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 50, 0, 2, 10, 60, 0, i]);
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += (p[k] << 8) | p[k + 1];
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    p[10] = (~sum >>> 8) & 0xff;
    p[11] = ~sum & 0xff;
    p.set([0x30, 0x39, 0x30, 0x39, 0, PACKET - 20, 0, 0], 20);
    meta[2 * i] = i * stride;
    meta[2 * i + 1] = PACKET;
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
          `[${r + 1}/${rounds}] ${io.padEnd(8)} write ${f.writeCpuUs.toFixed(2)} µs CPU/packet (${f.writeKpps.toFixed(0)} kpps), read ${f.readCpuUs.toFixed(2)} µs CPU/packet (${f.readWakeups} wake-ups, ${f.uringEnters} io_uring_enter)\n`,
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
    ].join("\n"),
  );
