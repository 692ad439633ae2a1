// The port-mapping server's sockets: UDP 5351 on each inside address, bound to its interface,
// answering through PortmapService (service.ts), and the announcements after a start. The
// gateway's own stack receives this traffic (it is addressed to the gateway; the 'local' table
// comes before masq's steering rules).

import { createSocket, type Socket } from "node:dgram";
import { networkInterfaces } from "node:os";
import { MasqError } from "../errors/masq-error.ts";
import { parseIpv4 } from "../packet/addr.ts";
import { bindOnDevice, closeSockets } from "./device-socket.ts";
import { NATPMP_PORT } from "./natpmp.ts";
import { PortmapService, type PortmapServiceOptions, silentLog } from "./service.ts";

/** An inside address to serve on, and the interface it belongs to. */
export interface ListenAddress {
  address: string;
  device: string;
}

export interface PortmapServerOptions extends PortmapServiceOptions {
  /** Inside addresses to listen on (UDP 5351 each), each taking requests from its device only. */
  listen: ListenAddress[];
  port?: number;
  /**
   * The fd of a UDP socket bound to address:port that receives only what arrives on `device`
   * (the addon's udpSocketOnDevice): a request that came in from outside with a forged inside
   * source address is then never seen.
   */
  openSocket: (address: string, port: number, device: string) => number;
}

/** Start-up announcements per address (RFC 6886 §3.2.1). */
const ANNOUNCEMENTS = 10;

export class PortmapServer {
  readonly service: PortmapService;
  private readonly sockets: Socket[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Per socket: sends the announcements once (the epoch and address of the moment). */
  private readonly announcers: Array<() => void> = [];

  private constructor(service: PortmapService) {
    this.service = service;
  }

  static async start(opts: PortmapServerOptions): Promise<PortmapServer> {
    const server = new PortmapServer(new PortmapService(opts));
    const log = opts.log ?? silentLog;
    try {
      for (const { address: addr, device } of opts.listen) {
        const s = createSocket({ type: "udp4" });
        server.sockets.push(s);
        const answer = async (msg: Uint8Array, src: number, rinfo: { address: string; port: number }) => {
          let reply: Uint8Array | undefined;
          try {
            reply = await server.service.answer(msg, src, device);
          } catch (err) {
            // A bug on one request must not take the gateway down.
            log.warn({ err, src: rinfo.address }, "port-mapping request failed");
            return;
          }
          if (!reply) return;
          try {
            s.send(reply, rinfo.port, rinfo.address);
          } catch (err) {
            // Closed while the request waited for the neighbour table (shutdown).
            log.debug({ err, src: rinfo.address }, "port-mapping answer not sent");
          }
        };
        s.on("message", (msg, rinfo) => {
          const src = parseIpv4(rinfo.address);
          if (src === undefined) return;
          if (opts.sources === undefined) return void answer(msg, src, rinfo);
          // Who sent it may need a fresh look at the neighbour table first (bounded, shared).
          const go = () => void answer(msg, src, rinfo);
          opts.sources.ready(src, device).then(go, go);
        });
        s.on("error", (err) => log.warn({ err, addr }, "port-mapping socket error"));
        const port = opts.port ?? NATPMP_PORT;
        const refused = (why: string) =>
          new MasqError(
            "MASQ_ERR_SOCKET_IN_USE",
            `portmap: cannot listen on ${addr}:${port} on ${device} (${why}); is another NAT-PMP/PCP server running? Set portmap.enabled = false to run without`,
          );
        await bindOnDevice(s, () => opts.openSocket(addr, port, device), refused);
        // Tell the link we (re)started, so clients renew at once (best effort): ten times, the
        // first now and then at doubling intervals from 250 ms (RFC 6886 §3.2.1), each with the
        // current epoch.
        const announce = () => {
          try {
            s.setMulticastInterface(addr);
            for (const a of server.service.announcements()) s.send(a.msg, a.port, "224.0.0.1");
          } catch (err) {
            log.debug({ err, addr }, "port-mapping announcement not sent");
          }
        };
        server.announcers.push(announce);
        announce();
        server.schedule(announce, 250, ANNOUNCEMENTS - 1);
      }
    } catch (err) {
      await server.close();
      throw err;
    }
    // Mappings lapse in the engine; the rules of ports steered for them go within a second.
    if (opts.steering) {
      const sweep = setInterval(() => server.service.sweep(), 1000);
      sweep.unref();
      server.sweeper = sweep;
    }
    log.info(
      {
        listen: opts.listen.map((a) => `${a.address}:${opts.port ?? NATPMP_PORT} on ${a.device}`),
        natpmp: opts.config.natpmp,
        pcp: opts.config.pcp,
      },
      "port mapping (NAT-PMP/PCP) listening",
    );
    return server;
  }

  /**
   * The public address changed: the epoch starts again and every inside link hears it, ten
   * times at doubling intervals from 250 ms (RFC 6886 §3.2.1; PCP ANNOUNCE, RFC 6887 §14.1.3).
   */
  addressChanged(from: number, to: number): void {
    this.service.addressChanged(from, to);
    for (const announce of this.announcers) {
      announce();
      this.schedule(announce, 250, ANNOUNCEMENTS - 1);
    }
  }

  stats(): Record<string, number> {
    return this.service.stats();
  }

  /** Runs `fn` `times` more times, after `delayMs`, then at doubling intervals. */
  private schedule(fn: () => void, delayMs: number, times: number): void {
    if (times <= 0) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
      this.schedule(fn, delayMs * 2, times - 1);
    }, delayMs);
    t.unref();
    this.timers.add(t);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    clearInterval(this.sweeper);
    await closeSockets(this.sockets);
  }
}

/** The IPv4 addresses of the named interfaces (the gateway's inside addresses), with their interface. */
export function interfaceAddresses(names: readonly string[]): ListenAddress[] {
  const all = networkInterfaces();
  return names.flatMap((n) =>
    (all[n] ?? []).filter((a) => a.family === "IPv4").map((a) => ({ address: a.address, device: n })),
  );
}
