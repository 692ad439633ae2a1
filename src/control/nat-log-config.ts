// The `[nat_log]` section of the config file (NAT event logging, src/natlog): its schema and how
// it is applied, apart from config.ts so that file stays the list of sections.
import * as v from "valibot";
import type { NatLogConfig } from "../natlog/config.ts";
import { parseLogTarget } from "../natlog/sender.ts";
import { boundedInt } from "./config-values.ts";

export const natLogSectionSchema = v.strictObject({
  syslog: v.optional(v.string('must be "udp://HOST:PORT", "tcp://HOST:PORT" or "unix:/path"')),
  ipfix: v.optional(v.string('must be "udp://HOST:PORT"')),
  sessions: v.optional(v.boolean()),
  destination: v.optional(v.boolean()),
  buffer_events: v.optional(boundedInt("events", 16, 4_194_304, { bounds: "number" })),
  template_interval: v.optional(boundedInt("seconds", 1, 3600, { bounds: "number and unit" })),
  observation_domain: v.optional(boundedInt("", 0, 0xffffffff)),
});

export type NatLogSection = v.InferOutput<typeof natLogSectionSchema>;

/** Applies a parsed `[nat_log]` section; a bad target is returned as its key and problem. */
export function applyNatLogSection(
  c: NatLogConfig,
  f: NatLogSection,
): { key: string; problem: string } | undefined {
  if (f.syslog !== undefined) {
    const target = parseLogTarget(f.syslog);
    if (typeof target === "string") return { key: "nat_log.syslog", problem: target };
    c.syslog = { text: f.syslog, target };
  }
  if (f.ipfix !== undefined) {
    const target = parseLogTarget(f.ipfix, false);
    if (typeof target === "string") return { key: "nat_log.ipfix", problem: target };
    c.ipfix = { text: f.ipfix, target };
  }
  if (f.sessions !== undefined) c.sessions = f.sessions;
  if (f.destination !== undefined) c.destination = f.destination;
  if (f.buffer_events !== undefined) c.bufferEvents = f.buffer_events;
  if (f.template_interval !== undefined) c.templateIntervalSec = f.template_interval;
  if (f.observation_domain !== undefined) c.observationDomain = f.observation_domain;
  return undefined;
}
