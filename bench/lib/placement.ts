// Which CPU does what during the bench's single-threaded figures (UDP 64 B, new flows, latency),
// so that a generator never shares a core with the translation it measures where that can be
// helped. On this 2-core machine:
//   - masq pins its packet loop to the last CPU (datapath_cpu = "auto") and lets RPS run the
//     kernel's work on the packets it writes on the others (src/datapath/cpu-placement.ts);
//   - the generators and the echo servers (C, bench/c) are pinned to the first CPU, on both sides;
//   - the kernel's NAT has no thread of its own: without help it runs in softirq on the CPU that
//     sent the packet into the veth, i.e. the generator's, so one core would carry generator and
//     NAT while the other idled (how the Python generators held the kernel side back). So on the
//     kernel side, RPS on the gateway's receiving veths (the LAN ports and the WAN) hands the
//     forwarding and NAT of both directions to the last CPU: each NAT gets the core the generator
//     does not use. masq's gateway gets no such RPS: its loop owns the last CPU, and the kernel's
//     share of masq's work into the TUN (the LAN veth's receive, routing, the TUN's transmit)
//     runs on the first, in the generator's send calls (so counted in its CPU). RPS to the loop's
//     CPU was tried: the receive softirq starves the loop (UDP 64 B at 50-65 kpps, 90% dropped at
//     the TUN queue), so with two cores the generator's CPU is the only place for that work.
// The RPS holds for every figure of the kernel side. TCP and HTTP's programs (iperf3, wrk,
// lighttpd: several busy threads each) stay unpinned: with two cores there is no core to spare
// for them, and their own CPU figures are printed instead.
import { cpus } from "node:os";
import type { MasqNetwork } from "../../src/lab/netns.ts";

/** The CPU of the generators and the echo servers. */
export const GENERATOR_CPU = 0;
/** The CPU of the translation: masq's loop (datapath_cpu = "auto": the last), the kernel's RPS. */
export const PATH_CPU = Math.max(0, cpus().length - 1);

/** argv pinned to the generators' CPU (when there is another for the path). */
export function pinned(argv: readonly string[]): string[] {
  return PATH_CPU === GENERATOR_CPU ? [...argv] : ["taskset", "-c", String(GENERATOR_CPU), ...argv];
}

/** Hex CPU mask of one CPU, as rps_cpus takes it. */
function cpuMask(cpu: number): string {
  return (1n << BigInt(cpu)).toString(16);
}

/**
 * Kernel side: the gateway's receive processing (forwarding and NAT) on the path's CPU, by RPS
 * on each receiving veth of the gateway. In the gateway's namespace only (ip netns exec mounts
 * that namespace's /sys).
 */
export async function steerKernelGateway(net: MasqNetwork): Promise<void> {
  if (PATH_CPU === GENERATOR_CPU) return;
  const mask = cpuMask(PATH_CPU);
  const devs = [...net.gate.lanPorts, net.gate.wan];
  const script = devs.map((d) => `echo ${mask} > /sys/class/net/${d}/queues/rx-0/rps_cpus`).join(" && ");
  await net.lab.run(net.gate.ns, ["sh", "-c", script]);
}

/** What the placement was, for the report. */
export function placementText(): string {
  if (PATH_CPU === GENERATOR_CPU) return "one CPU: generators and translation share it";
  return `generators and echo servers of UDP, new flows and latency on CPU ${GENERATOR_CPU} (TCP and HTTP programs unpinned); masq's loop on CPU ${PATH_CPU}; the kernel's forwarding and NAT on CPU ${PATH_CPU} by RPS on the gateway's veths (every figure)`;
}
