// Builds the NAT log from its configuration: a sender per target and the exporter that drains
// the engines' rings into them.
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import type { NatEventRing } from "../nat/nat-events.ts";
import type { NatLogConfig } from "./config.ts";
import { NatLogExporter } from "./exporter.ts";
import {
  type LogTarget,
  type Sender,
  TcpSender,
  UdpSender,
  type UnixDatagramNative,
  UnixDatagramSender,
} from "./sender.ts";
import { FACILITY_LOCAL0 } from "./syslog.ts";

function senderFor(text: string, t: LogTarget, unix: () => UnixDatagramNative): Sender {
  if (t.kind === "udp") return new UdpSender(text, t.host, t.port);
  if (t.kind === "tcp") return new TcpSender(text, t.host, t.port);
  return new UnixDatagramSender(text, t.path, unix());
}

/** Starts draining `rings` (the engines') into the configured targets. */
export function startNatLog(
  c: NatLogConfig,
  rings: () => NatEventRing[],
  unix: () => UnixDatagramNative,
): NatLogExporter {
  const exporter = new NatLogExporter({
    rings,
    destination: c.destination,
    // The engine's clock is the datapath's performance.now().
    toWallMs: (ms) => performance.timeOrigin + ms,
    ...(c.syslog
      ? {
          syslog: {
            sender: senderFor(c.syslog.text, c.syslog.target, unix),
            // RFC 6587 §3.4.1 over TCP; a datagram is one message (RFC 5426, and /dev/log).
            framing: c.syslog.target.kind === "tcp" ? "octet-counting" : "datagram",
            header: {
              hostname: hostname(),
              appName: "masq",
              procId: String(process.pid),
              facility: FACILITY_LOCAL0,
              destination: c.destination,
            },
          },
        }
      : {}),
    ...(c.ipfix
      ? {
          ipfix: {
            sender: senderFor(c.ipfix.text, c.ipfix.target, unix),
            domainId: c.observationDomain,
            templateIntervalSec: c.templateIntervalSec,
          },
        }
      : {}),
  });
  exporter.start();
  return exporter;
}
