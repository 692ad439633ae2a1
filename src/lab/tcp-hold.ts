// One TCP connection held open: `tcp-hold --host H --port P` connects to the lab's Internet
// host, asks for its page once now and once more for every line on stdin, over the same
// connection (HTTP keep-alive), and prints each answer's "you came from ADDRESS:PORT" line. The
// scale-out lab shows with it that an established connection lives on while the other gateway
// fails. Exits 1 when the connection closes or fails.
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { host: { type: "string" }, port: { type: "string", default: "80" } },
});

const sock = connect({ host: values.host ?? "", port: Number(values.port) });
const ask = () => sock.write(`GET / HTTP/1.1\r\nHost: ${values.host}\r\nConnection: keep-alive\r\n\r\n`);
let text = "";
sock.setEncoding("utf8");
sock.on("connect", ask);
sock.on("data", (d: string) => {
  text += d;
  for (let m = /you came from \S+\n/.exec(text); m !== null; m = /you came from \S+\n/.exec(text)) {
    process.stdout.write(m[0]);
    text = text.slice(m.index + m[0].length);
  }
});
sock.on("error", (e) => {
  process.stderr.write(`tcp-hold: ${e.message}\n`);
  process.exit(1);
});
sock.on("close", () => {
  process.stderr.write("tcp-hold: the connection closed\n");
  process.exit(1);
});
createInterface({ input: process.stdin }).on("line", ask);
process.stdin.on("end", () => {
  sock.removeAllListeners("close");
  sock.end();
  process.exit(0);
});
