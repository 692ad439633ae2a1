// The "Internet host" of the lab and the end-to-end tests: an HTTP server and a UDP echo server
// that log every peer they see (as JSON lines on stdout), so a test or a person can check that
// the inside hosts arrive with the gateway's public address.
//   GET /            a greeting naming the peer's address and port
//   GET /bytes/N     N deterministic bytes (for byte-exact transfer checks)
//   UDP echo         replies "echo <text> from <addr>:<port>"
import { createSocket } from "node:dgram";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { fillBody } from "./body.ts";

const { values } = parseArgs({
  options: {
    http: { type: "string", default: "80" },
    udp: { type: "string", default: "7" },
    host: { type: "string", default: "0.0.0.0" },
  },
});

const log = (o: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify({ t: Date.now(), ...o })}\n`);

const http = createServer((req, res) => {
  const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
  log({ proto: "http", peer: req.socket.remoteAddress, port: req.socket.remotePort, path: req.url });
  const m = /^\/bytes\/(\d+)$/.exec(req.url ?? "");
  if (m) {
    const n = Math.min(Number(m[1]), 1 << 30);
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": n });
    // Stream in chunks so a large body does not sit in memory.
    let sent = 0;
    const chunk = 1 << 16;
    const pump = () => {
      while (sent < n) {
        const len = Math.min(chunk, n - sent);
        const b = Buffer.allocUnsafe(len);
        fillBody(b, sent);
        sent += len;
        if (!res.write(b)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(`hello from the Internet host; you came from ${peer}\n`);
});
// An idle kept-alive connection stays open (node's default closes it after 5 s): the scale-out
// lab shows a connection that lives on while a gateway fails (tcp-hold.ts).
http.keepAliveTimeout = 10 * 60_000;
http.listen(Number(values.http), values.host, () =>
  log({ event: "listening", proto: "http", port: Number(values.http) }),
);

const udp = createSocket("udp4");
udp.on("message", (msg, rinfo) => {
  log({ proto: "udp", peer: rinfo.address, port: rinfo.port, bytes: msg.length });
  udp.send(`echo ${msg.toString().trim()} from ${rinfo.address}:${rinfo.port}\n`, rinfo.port, rinfo.address);
});
udp.bind(Number(values.udp), values.host, () =>
  log({ event: "listening", proto: "udp", port: Number(values.udp) }),
);

const stop = () => {
  http.close();
  udp.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
