// Structured logs with pino: JSON lines for machines (MASQ_LOG_FORMAT=json, log.format = "json"),
// or the same records as compact text lines for a person at a terminal.
import { type Logger, pino } from "pino";
import type { LogFormat, LogLevel } from "./config.ts";

export type { Logger };

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const SKIP = new Set(["level", "time", "pid", "hostname", "msg", "name"]);

/** One JSON record as "12:00:01 INFO  msg key=value …". */
export function formatRecord(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = new Date(typeof rec.time === "number" ? rec.time : Date.now()).toISOString().slice(11, 19);
  const level = (LEVEL_NAMES[rec.level as number] ?? String(rec.level)).padEnd(5);
  const fields = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`);
  return `${time} ${level} ${String(rec.msg ?? "")}${fields.length ? ` ${fields.join(" ")}` : ""}\n`;
}

export function createLogger(opts: { level: LogLevel; format: LogFormat }): Logger {
  const options = { level: opts.level, base: { pid: process.pid } };
  if (opts.format === "json") return pino(options, pino.destination({ dest: 1, sync: true }));
  return pino(options, {
    write(line: string) {
      process.stdout.write(formatRecord(line));
    },
  });
}
