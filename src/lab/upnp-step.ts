// `masq lab --upnp`: A-box asks masq for a port over UPnP IGD with Debian's miniupnpc (`upnpc`),
// as a game console or a BitTorrent client would, and the Internet host reaches A-box's web
// server through it. Interface mode maps a port of masq's own range, pool mode 18080.
import { labScript } from "./masq-process.ts";
import type { MasqNetwork } from "./netns.ts";

export interface UpnpStepResult {
  ok: boolean;
  lines: string[];
}

function oneLine(s: string): string {
  return s.trim().replace(/\s+/g, " ").slice(0, 160);
}

/** Maps public:<port> to A-box's port 8080 with upnpc, fetches it from the Internet host, deletes it. */
export async function upnpStep(net: MasqNetwork): Promise<UpnpStepResult> {
  const lab = net.lab;
  const box = net.inside[0];
  const port = net.mode === "pool" ? 18080 : 61500;
  const lines: string[] = [];
  const web = lab.spawn(box.ns, [...labScript("inet-service"), "--http", "8080", "--udp", "7070"]);
  try {
    await web.waitFor(/"proto":"udp"/, 10_000);
    // -i: miniupnpc takes a gateway whose public address is a reserved one (the lab's) for offline.
    const add = await lab.exec(
      box.ns,
      ["upnpc", "-i", "-e", "lab", "-a", box.addr, "8080", String(port), "TCP"],
      {
        timeoutMs: 30_000,
      },
    );
    const mapped = /external \S+ TCP is redirected to internal \S+/.exec(add.stdout)?.[0];
    lines.push(
      `upnpc -a ${box.addr} 8080 ${port} TCP: ${mapped ?? oneLine(add.stderr || add.stdout || "upnpc missing: apt-get install miniupnpc")}`,
    );
    if (add.code !== 0 || !mapped) return { ok: false, lines };
    const get = await lab.exec(
      net.inet.ns,
      ["curl", "-sS", "--max-time", "5", `http://${net.publicAddr}:${port}/`],
      { timeoutMs: 10_000 },
    );
    lines.push(
      `the Internet host fetches http://${net.publicAddr}:${port}/: ${oneLine(get.stdout || get.stderr)}`,
    );
    const del = await lab.exec(box.ns, ["upnpc", "-i", "-d", String(port), "TCP"], { timeoutMs: 30_000 });
    lines.push(`upnpc -d ${port} TCP: ${del.code === 0 ? "deleted" : oneLine(del.stdout)}`);
    return { ok: get.code === 0 && del.code === 0, lines };
  } finally {
    await web.kill("SIGTERM", 5000);
  }
}
