// The IPv6 PCP server's sockets (`[ipv6] pcp = true`): UDP 5351 on each global IPv6 address of
// the inside interfaces that lies in ipv6.inside_networks, bound to its interface, so a request
// that came in from outside with a forged inside source is never seen (as for IPv4, the addon's
// udpSocketOnDevice). The gateway's own stack receives these requests: they are addressed to it,
// and the 'local' table comes before masq's ip -6 steering rules (host/ipv6-rules.ts).
//
// Not done: the link-local address (fe80::…%lan0, what a client that takes its default router as
// the server would use, RFC 6887 §8.1) and the ANNOUNCE after a start (§14.1.3).
import { createSocket, type Socket } from "node:dgram";
import { networkInterfaces } from "node:os";
import { MasqError } from "../errors/masq-error.ts";
import { bindOnDevice, closeSockets } from "../portmap/device-socket.ts";
import { PCP_PORT } from "../portmap/pcp.ts";
import type { PortmapLog } from "../portmap/service.ts";
import { inPrefix, parseIpv6, parseIpv6Prefix } from "./addr6.ts";
import { Pcp6Service, type Pcp6ServiceOptions } from "./pcp6.ts";

export interface Pcp6ServerOptions extends Pcp6ServiceOptions {
  /** The inside interfaces; their addresses in insideNetworks are listened on. */
  inside: readonly string[];
  /** The fd of a UDP socket bound to address:port receiving only what arrives on `device`. */
  openSocket: (address: string, port: number, device: string) => number;
  log: PortmapLog;
  port?: number;
}

export class Pcp6Server {
  readonly service: Pcp6Service;
  private readonly sockets: Socket[] = [];

  private constructor(service: Pcp6Service) {
    this.service = service;
  }

  static async start(o: Pcp6ServerOptions): Promise<Pcp6Server> {
    const listen = insideIpv6Addresses(o.inside, o.insideNetworks);
    if (listen.length === 0)
      throw new MasqError(
        "MASQ_ERR_INTERFACE_MISSING",
        `ipv6.pcp: inside interface(s) ${o.inside.join(", ")} have no IPv6 address in ipv6.inside_networks to listen on`,
      );
    const server = new Pcp6Server(new Pcp6Service(o));
    const port = o.port ?? PCP_PORT;
    try {
      for (const { address, device } of listen) {
        const s = createSocket({ type: "udp6" });
        server.sockets.push(s);
        s.on("message", (msg, rinfo) => {
          const src = parseIpv6(rinfo.address);
          if (src === undefined) return;
          let reply: Uint8Array | undefined;
          try {
            reply = server.service.handle(msg, src);
          } catch (err) {
            // A bug on one request must not take the gateway down.
            o.log.warn({ err, src: rinfo.address }, "ipv6 pcp request failed");
            return;
          }
          if (reply) s.send(reply, rinfo.port, rinfo.address);
        });
        s.on("error", (err) => o.log.warn({ err, address }, "ipv6 pcp socket error"));
        const refused = (why: string) =>
          new MasqError(
            "MASQ_ERR_SOCKET_IN_USE",
            `ipv6.pcp: cannot listen on [${address}]:${port} on ${device} (${why}); is another PCP server running? Set ipv6.pcp = false to run without`,
          );
        await bindOnDevice(s, () => o.openSocket(address, port, device), refused);
      }
    } catch (err) {
      await server.close();
      throw err;
    }
    o.log.info({ listen: listen.map((a) => `[${a.address}]:${port} on ${a.device}`) }, "IPv6 PCP listening");
    return server;
  }

  async close(): Promise<void> {
    await closeSockets(this.sockets);
  }
}

/** The global IPv6 addresses of the named interfaces that lie in the inside prefixes. */
export function insideIpv6Addresses(
  names: readonly string[],
  insideNetworks: readonly string[],
): Array<{ address: string; device: string }> {
  const prefixes = insideNetworks.map((n) => parseIpv6Prefix(n) as { addr: Uint8Array; len: number });
  const all = networkInterfaces();
  return names.flatMap((device) =>
    (all[device] ?? [])
      .filter((a) => {
        const b = a.family === "IPv6" ? parseIpv6(a.address) : undefined;
        return b !== undefined && prefixes.some((p) => inPrefix(b, p));
      })
      .map((a) => ({ address: a.address, device })),
  );
}
