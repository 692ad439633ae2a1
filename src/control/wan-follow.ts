// Follows the outside interface's address (interface mode) from the kernel's rtnetlink events,
// through the addon's NETLINK_ROUTE socket (native/netlink.cc), not by polling `ip`: the links
// and IPv4 addresses are dumped once, then the multicast events (RTMGRP_LINK,
// RTMGRP_IPV4_IFADDR) keep the picture current. When the kernel reports lost events (ENOBUFS,
// the socket's buffer overran) the picture is dumped again. Each transition (wan-address.ts) is
// handed to `onTransition`, one at a time, in order.

import { loadAddon } from "../io/addon.ts";
import { dumpRequest, parseRouteMessages, RTM_GETADDR, RTM_GETLINK } from "../io/rtnetlink.ts";
import { parseIpv4 } from "../packet/addr.ts";
import type { RunConfig } from "./config.ts";
import type { Resolved } from "./engine-config.ts";
import type { createLogger } from "./log.ts";
import { WanAddressState, type WanTransition } from "./wan-address.ts";

/** The addon's socket (native/netlink.cc), or a fake in tests. */
export interface RouteSocketLike {
  send(buf: Uint8Array): boolean;
  close(): void;
}

export type OpenRouteSocket = (onMessage: (buf: Uint8Array | null, errno: number) => void) => RouteSocketLike;

export interface WanFollowLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const ENOBUFS = 105;
/** How long the first dump may take before masq goes on with what it read at start. */
const SYNC_TIMEOUT_MS = 5000;

export class WanFollower {
  private readonly state: WanAddressState;
  private readonly socket: RouteSocketLike;
  private readonly onTransition: (t: WanTransition) => Promise<void>;
  private readonly log: WanFollowLog;
  /** The dump in progress (links, then addresses); none: events are taken as they come. */
  private dumping: "links" | "addresses" | undefined;
  private seq = 1;
  /** Events were lost during a dump: dump again once it ends. */
  private again = false;
  private chain: Promise<void> = Promise.resolve();
  private firstSync: (() => void) | undefined;
  readonly synced: Promise<void>;
  /** Malformed messages skipped, datagrams lost (ENOBUFS), for masq stats. */
  readonly stats = { events: 0, malformed: 0, overruns: 0, transitions: 0 };

  constructor(opts: {
    state: WanAddressState;
    open: OpenRouteSocket;
    onTransition: (t: WanTransition) => Promise<void>;
    log: WanFollowLog;
  }) {
    this.state = opts.state;
    this.onTransition = opts.onTransition;
    this.log = opts.log;
    this.synced = new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn(
          {},
          "outside interface: the kernel did not answer the address dump; following its events",
        );
        this.dumping = undefined;
        resolve();
      }, SYNC_TIMEOUT_MS);
      timer.unref();
      this.firstSync = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.socket = opts.open((buf, errno) => this.receive(buf, errno));
    this.dump();
  }

  /** Every transition so far has been handled. */
  idle(): Promise<void> {
    return this.chain;
  }

  close(): void {
    this.socket.close();
  }

  private dump(): void {
    this.state.reset();
    this.dumping = "links";
    this.socket.send(dumpRequest(RTM_GETLINK, this.seq++));
  }

  private receive(buf: Uint8Array | null, errno: number): void {
    if (buf === null) {
      if (errno === ENOBUFS) {
        this.stats.overruns++;
        this.log.warn({}, "outside interface: netlink events were lost; reading the addresses again");
        // A dump in progress cannot be restarted until it ends; its end starts the next.
        if (this.dumping === undefined) this.dump();
        else this.again = true;
      }
      return;
    }
    const { events, bad } = parseRouteMessages(buf);
    this.stats.malformed += bad;
    this.stats.events += events.length;
    this.state.learn(events);
    for (const ev of events) {
      if (ev.kind !== "done" && ev.kind !== "error") continue;
      if (this.dumping === "links") {
        this.dumping = "addresses";
        this.socket.send(dumpRequest(RTM_GETADDR, this.seq++));
      } else if (this.dumping === "addresses") {
        this.dumping = undefined;
        if (this.again) {
          this.again = false;
          this.dump();
          return;
        }
        this.firstSync?.();
        this.firstSync = undefined;
      }
    }
    if (this.dumping !== undefined) return;
    const t = this.state.decide();
    if (!t) return;
    this.stats.transitions++;
    this.chain = this.chain
      .then(() => this.onTransition(t))
      .catch((err: unknown) => this.log.warn({ err }, "outside interface: an address change failed"));
  }
}

/** Interface mode: follows the outside interface's address (wan-follow.ts), once in sync. */
export async function followWanAddress(
  cfg: RunConfig,
  host: Resolved,
  onTransition: (t: WanTransition) => Promise<void>,
  log: ReturnType<typeof createLogger>,
): Promise<WanFollower> {
  if (host.publicAddresses.length === 0)
    log.warn(
      { outside: cfg.outside },
      "the outside interface has no IPv4 address yet: waiting for one (nothing is translated until it comes)",
    );
  const addon = loadAddon();
  const follower = new WanFollower({
    state: new WanAddressState(cfg.outside, parseIpv4(host.publicAddresses[0] ?? "") ?? 0),
    open: (onMessage) => new addon.RouteSocket(addon.RTMGRP_LINK | addon.RTMGRP_IPV4_IFADDR, onMessage),
    onTransition,
    log,
  });
  await follower.synced;
  return follower;
}
