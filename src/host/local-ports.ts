// The ports the gateway itself uses: its listening TCP sockets, its bound UDP sockets and the
// kernel's ephemeral range. In interface mode masq shares the gateway's address, so a port it
// steers into itself for a NAT-PMP/PCP mapping is taken from the gateway: one of these must never
// be (RFC 6886 §3.3 and RFC 6887 §11.3 let the server suggest another port instead).
import { readFile } from "node:fs/promises";
import { ephemeralPortRange } from "./checks.ts";

/** TCP_LISTEN in /proc/net/tcp's `st` column (include/net/tcp_states.h). */
const TCP_LISTEN = "0A";

/**
 * The local ports in the text of /proc/net/{tcp,tcp6,udp,udp6}: for TCP those of listening
 * sockets, for UDP those of every socket (a bound UDP socket receives on its port). Whatever
 * local address they are bound to: a socket on another of the gateway's addresses still tells
 * that the port is the gateway's.
 */
export function parseProcNetPorts(text: string, proto: "tcp" | "udp"): Set<number> {
  const ports = new Set<number>();
  for (const line of text.split("\n").slice(1)) {
    // "  0: 00000000:1F90 00000000:0000 0A ..." : sl, local address:port, remote, state.
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const port = Number.parseInt(f[1].split(":")[1] ?? "", 16);
    if (!Number.isInteger(port) || port === 0) continue;
    if (proto === "tcp" && f[3] !== TCP_LISTEN) continue;
    ports.add(port);
  }
  return ports;
}

/** Reads /proc/net of the current namespace; a file that is missing (no IPv6) counts as empty. */
async function readOr(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return "";
  }
}

/**
 * Why the gateway keeps `port` of `proto` for itself (a sentence), or undefined when it does not
 * use it. Read at the moment of asking: the gateway's services come and go.
 */
export async function gatewayPortUse(proto: "tcp" | "udp", port: number): Promise<string | undefined> {
  const eph = await ephemeralPortRange();
  if (port >= eph.first && port <= eph.last)
    return `port ${port} is in the kernel's ephemeral range (net.ipv4.ip_local_port_range ${eph.first} ${eph.last})`;
  for (const file of [proto, `${proto}6`]) {
    const text = await readOr(`/proc/net/${file}`);
    if (parseProcNetPorts(text, proto).has(port))
      return `the gateway itself has a ${proto.toUpperCase()} socket on port ${port}`;
  }
  return undefined;
}
