// rsyslogd as the NAT log's receiver in an e2e test: started in a lab namespace with its own
// config, pid file and work directory under `dir`, it listens on UDP and TCP (and, when asked, a
// Unix socket) and writes what it parsed (the RFC 5424 fields, not the raw bytes) to a file. The
// lab ends it with its other processes.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab } from "../../src/lab/netns.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";

export interface Rsyslog {
  /** The lines written so far. */
  lines(): string[];
  /** The Unix socket (with `unixSocket`). */
  socket: string;
}

export async function startRsyslog(
  lab: Lab,
  ns: string,
  dir: string,
  address: string,
  port: number,
  unixSocket = false,
): Promise<Rsyslog> {
  const logFile = join(dir, "nat.log");
  const socket = join(dir, "log.sock");
  writeFileSync(
    join(dir, "rsyslog.conf"),
    [
      `global(workDirectory="${dir}")`,
      'module(load="imudp")',
      'module(load="imtcp")',
      ...(unixSocket ? ['module(load="imuxsock" SysSock.Use="off")'] : []),
      `input(type="imudp" address="${address}" port="${port}")`,
      `input(type="imtcp" address="${address}" port="${port}")`,
      // RFC 5424 from a local socket too: the parser chain, not imuxsock's legacy one.
      ...(unixSocket
        ? [`input(type="imuxsock" Socket="${socket}" UseSpecialParser="off" ParseHostname="on")`]
        : []),
      'template(name="nat" type="string" string="%protocol-version% %app-name% %msgid% %structured-data% %msg%\\n")',
      `*.* action(type="omfile" file="${logFile}" template="nat")`,
      "",
    ].join("\n"),
  );
  lab.spawn(ns, [
    "/usr/sbin/rsyslogd",
    "-n",
    "-f",
    join(dir, "rsyslog.conf"),
    "-i",
    join(dir, "rsyslogd.pid"),
  ]);
  // imtcp listening: rsyslogd has read its config and opened its inputs.
  await waitListening(lab, ns, "tcp", port, { timeoutMs: 20_000 });
  if (unixSocket) await waitUntil("rsyslog's unix socket", () => existsSync(socket), { timeoutMs: 20_000 });
  return {
    socket,
    lines: () => (existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n") : []),
  };
}
