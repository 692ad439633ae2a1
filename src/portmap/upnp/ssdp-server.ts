// SSDP on the inside interfaces: one UDP socket per inside address on port 1900, bound to its
// interface (SO_BINDTODEVICE, through the addon, as the NAT-PMP server's), member of
// 239.255.255.250 there. It answers M-SEARCH from inside hosts only (a source on no inside network
// is ignored and counted), each answer within its search's amplification budget (ssdp.ts) and
// per-source and gateway-wide rates; it sends NOTIFY ssdp:alive at start and every interval, and
// ssdp:byebye when it stops.

import { createSocket, type Socket } from "node:dgram";
import { parseIpv4 } from "../../packet/addr.ts";
import { TokenBucket } from "../../policy/rate.ts";
import type { UpnpDevice } from "./device.ts";
import {
  type Announcer,
  answersWithinBudget,
  notify,
  parseSearch,
  SSDP_GROUP,
  SSDP_PORT,
  targets,
} from "./ssdp.ts";

/** Answers per second to one address, and to all. */
const ANSWERS_PER_SOURCE = { rate: 20, burst: 40 };
const ANSWERS_IN_ALL = { rate: 400, burst: 800 };
/** Sources tracked for their rate; beyond it the table starts again (a flood of forged sources). */
const MAX_SOURCES = 4096;
/** Answers waiting for their random delay (UDA 1.1 §1.3.3: up to MX seconds, here at most 1 s). */
const MAX_PENDING = 64;
/** UDA 1.1 §1.1.2: an SSDP multicast's TTL should default to 2. */
const MULTICAST_TTL = 2;

export interface SsdpListen {
  address: string;
  device: string;
  /** The description URL announced on this address. */
  location: string;
}

export interface SsdpOptions {
  root: UpnpDevice;
  listen: SsdpListen[];
  notifyIntervalSec: number;
  bootId: number;
  configId: number;
  isInside(addr: number): boolean;
  count(name: string): void;
  /** A UDP socket's fd bound to address:port receiving only what arrives on device. */
  openSocket(address: string, port: number, device: string): number;
  log: { debug(o: object, m: string): void; warn(o: object, m: string): void };
  random?: () => number;
}

export class SsdpServer {
  private readonly sockets: Array<{ s: Socket; a: SsdpListen }> = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly perSource = new Map<number, TokenBucket>();
  private readonly inAll = new TokenBucket(ANSWERS_IN_ALL.rate, ANSWERS_IN_ALL.burst);
  private interval: NodeJS.Timeout | undefined;
  private bootId: number;

  private constructor(private readonly o: SsdpOptions) {
    this.bootId = o.bootId;
  }

  static async start(o: SsdpOptions): Promise<SsdpServer> {
    const server = new SsdpServer(o);
    try {
      for (const a of o.listen) await server.open(a);
    } catch (err) {
      await server.close(false);
      throw err;
    }
    server.announce("ssdp:alive");
    server.interval = setInterval(() => server.announce("ssdp:alive"), o.notifyIntervalSec * 1000);
    server.interval.unref();
    return server;
  }

  private announcer(a: SsdpListen): Announcer {
    // Max-age beyond two intervals, so one lost round does not make the device vanish.
    return {
      location: a.location,
      maxAgeSec: this.o.notifyIntervalSec * 3,
      bootId: this.bootId,
      configId: this.o.configId,
    };
  }

  private async open(a: SsdpListen): Promise<void> {
    const s = createSocket({ type: "udp4" });
    this.sockets.push({ s, a });
    s.on("error", (err) => this.o.log.warn({ err, address: a.address }, "SSDP socket error"));
    s.on("message", (msg, rinfo) => this.onMessage(s, a, msg, rinfo));
    const fd = this.o.openSocket("0.0.0.0", SSDP_PORT, a.device);
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.bind({ fd }, () => {
        s.off("error", reject);
        resolve();
      });
    });
    s.addMembership(SSDP_GROUP, a.address);
    s.setMulticastInterface(a.address);
    s.setMulticastTTL(MULTICAST_TTL);
    s.setMulticastLoopback(false);
  }

  private rateAllows(src: number, answers: number): boolean {
    let b = this.perSource.get(src);
    if (!b) {
      if (this.perSource.size >= MAX_SOURCES) this.perSource.clear();
      b = new TokenBucket(ANSWERS_PER_SOURCE.rate, ANSWERS_PER_SOURCE.burst);
      this.perSource.set(src, b);
    }
    const now = performance.now();
    for (let i = 0; i < answers; i++) if (!b.take(now) || !this.inAll.take(now)) return false;
    return true;
  }

  private onMessage(s: Socket, a: SsdpListen, msg: Buffer, rinfo: { address: string; port: number }): void {
    const src = parseIpv4(rinfo.address);
    if (src === undefined || !this.o.isInside(src)) {
      this.o.count("ssdp_not_inside");
      return;
    }
    const search = parseSearch(msg);
    if (typeof search === "string") {
      this.o.count(`ssdp_${search}`);
      return;
    }
    this.o.count("ssdp_searches");
    const { answers, overBudget } = answersWithinBudget(this.o.root, search, msg.length, this.announcer(a));
    if (overBudget > 0) this.o.count("ssdp_answers_over_budget");
    if (answers.length === 0) return;
    if (!this.rateAllows(src, answers.length) || this.timers.size >= MAX_PENDING) {
      this.o.count("ssdp_rate_limited");
      return;
    }
    const go = () => {
      for (const text of answers) {
        this.o.count("ssdp_answers");
        s.send(text, rinfo.port, rinfo.address, (err) => {
          if (err) this.o.log.debug({ err, to: rinfo.address }, "SSDP answer not sent");
        });
      }
    };
    // Spread the answers over up to MX seconds (UDA 1.1 §1.3.3), at most one: clients wait MX.
    const delayMs = Math.floor((this.o.random ?? Math.random)() * Math.min(search.mx, 1) * 1000);
    const t = setTimeout(() => {
      this.timers.delete(t);
      go();
    }, delayMs);
    t.unref();
    this.timers.add(t);
  }

  /** Sends one NOTIFY round on every address. */
  private announce(nts: "ssdp:alive" | "ssdp:byebye"): Promise<void> {
    const sends: Array<Promise<void>> = [];
    for (const { s, a } of this.sockets)
      for (const t of targets(this.o.root)) {
        const text = notify(t, this.announcer(a), nts);
        sends.push(
          new Promise<void>((resolve) => {
            try {
              s.send(text, SSDP_PORT, SSDP_GROUP, () => resolve());
            } catch {
              resolve(); // closed meanwhile
            }
          }),
        );
      }
    this.o.count(nts === "ssdp:alive" ? "ssdp_notify_alive" : "ssdp_notify_byebye");
    return Promise.all(sends).then(() => {});
  }

  /**
   * The public address changed: clients re-read the device (UDA 1.1 §1.2.2: a new BOOTID with
   * byebye then alive), so they ask GetExternalIPAddress again.
   */
  async readvertise(): Promise<void> {
    await this.announce("ssdp:byebye");
    this.bootId++;
    await this.announce("ssdp:alive");
  }

  async close(byebye = true): Promise<void> {
    if (this.interval) clearInterval(this.interval);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (byebye) await this.announce("ssdp:byebye");
    await Promise.all(
      this.sockets.splice(0).map(
        ({ s }) =>
          new Promise<void>((resolve) => {
            try {
              s.close(() => resolve());
            } catch {
              resolve();
            }
          }),
      ),
    );
  }
}
