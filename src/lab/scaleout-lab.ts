// `masq lab --gateways 2`: deterministic NAT scaled out over two masq gateways behind the
// kernel's ECMP (src/lab/scaleout.ts builds the network). Shows each box's traffic through the
// gateway the router hashed it to, on that gateway's part of the pool and in the box's computed
// range; whois asked of either gateway for every box; then gateway failure: the failed gateway's
// boxes move to the other one (new connections work), the other's boxes keep an established
// connection.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { WhoisReply } from "../control/whois.ts";
import { leftInStateDir, type MasqProcess } from "./masq-process.ts";
import { handleSignalsInCaller } from "./netns.ts";
import {
  buildScaleoutNetwork,
  failGateway,
  fetchFrom,
  holdConnection,
  rangeThrough,
  routedNode,
  SCALEOUT_INSIDE,
  SCALEOUT_POOL,
  type ScaleoutBox,
  startInet,
  startScaleoutMasq,
} from "./scaleout.ts";
import { waitUntil } from "./wait.ts";

const BOX_NAMES: Record<ScaleoutBox["name"], string> = { abox: "A-box", bbox: "B-box", cbox: "C-box" };

export async function runScaleoutLab(say: (line: string) => void, prefix = "masqlab"): Promise<number> {
  say("masq lab: building deterministic NAT on two gateways behind ECMP in network namespaces ...");
  const net = await buildScaleoutNetwork(prefix);
  const tmp = mkdtempSync(join(tmpdir(), "masqlab-"));
  handleSignalsInCaller();
  let masqs: MasqProcess[] = [];
  let failures = 0;
  const check = (ok: boolean, text: string) => {
    say(`   ${ok ? "✔" : "✘"} ${text}`);
    if (!ok) failures++;
  };
  try {
    say("");
    say(
      `   boxes on ${SCALEOUT_INSIDE} ─ 100.64.0.1 [router, ECMP by inside source] ─┬─ [gate0 node 0] ─┬─ [isp] ─ ${net.inet.addr}`,
    );
    say("                                                                 └─ [gate1 node 1] ─┘");
    for (const g of net.gateways)
      say(`   gateway node ${g.node} owns ${g.own.join(", ")} of the pool ${SCALEOUT_POOL}`);
    say("");
    await startInet(net);
    masqs = await startScaleoutMasq(net, tmp);
    say(`masq runs in both gateways (pids ${masqs.map((m) => m.proc.pid).join(", ")})`);
    say("");
    say("── Each box through the gateway the router's ECMP picks for it:");
    const nodeOf = new Map<ScaleoutBox, number>();
    for (const box of net.boxes) {
      const node = await routedNode(net.lab, net.router.ns, box.addr);
      nodeOf.set(box, node);
      const want = rangeThrough(net, box, node);
      const seen = await fetchFrom(net, box);
      check(
        typeof seen !== "string" &&
          seen.addr === want.addr &&
          seen.port >= want.first &&
          seen.port <= want.last,
        `${BOX_NAMES[box.name]} ${box.addr} → node ${node}: the Internet host saw ${typeof seen === "string" ? seen : `${seen.addr}:${seen.port}`} (its range there: ${want.addr} ${want.first}-${want.last})`,
      );
    }
    say("");
    say("── masq whois, asked of each gateway, for each box's range on each node:");
    for (const box of net.boxes)
      for (const node of [0, 1]) {
        const r = rangeThrough(net, box, node);
        for (const [asked, m] of masqs.entries()) {
          const w = JSON.parse(await m.cli(["whois", `${r.addr}:${r.first}`, "--json"])) as WhoisReply;
          const h = w.holders[0];
          check(
            h?.inside === box.addr && h.node === node,
            `node ${asked}: ${r.addr}:${r.first} → ${h ? `${h.inside} through node ${h.node}` : "nobody"}`,
          );
        }
      }
    say("");
    const victim = nodeOf.get(net.boxes[1])!;
    const survivor = 1 - victim;
    const stays = net.boxes.filter((b) => nodeOf.get(b) === survivor);
    const moves = net.boxes.filter((b) => nodeOf.get(b) === victim);
    const held = await Promise.all(stays.map((b) => holdConnection(net, b)));
    for (const [i, b] of stays.entries())
      say(
        `   ${BOX_NAMES[b.name]} holds a TCP connection open through node ${survivor}: ${held[i].first.addr}:${held[i].first.port}`,
      );
    say(`── Gateway node ${victim} fails (masq stops, its link goes down) ...`);
    await failGateway(net, masqs[victim], victim);
    for (const box of moves) {
      const want = rangeThrough(net, box, survivor);
      const seen = await waitUntil(`${box.name} through node ${survivor}`, async () => {
        const s = await fetchFrom(net, box);
        return typeof s !== "string" && s;
      }).catch((e: Error) => e.message);
      check(
        typeof seen !== "string" &&
          seen.addr === want.addr &&
          seen.port >= want.first &&
          seen.port <= want.last,
        `${BOX_NAMES[box.name]} moved to node ${survivor}: a new connection came from ${typeof seen === "string" ? seen : `${seen.addr}:${seen.port}`} (range ${want.addr} ${want.first}-${want.last})`,
      );
    }
    for (const [i, box] of stays.entries()) {
      const again = await held[i].again().catch((e: Error) => e.message);
      check(
        typeof again !== "string" && again.addr === held[i].first.addr && again.port === held[i].first.port,
        `${BOX_NAMES[box.name]} untouched: its held connection still answers, from ${typeof again === "string" ? again : `${again.addr}:${again.port}`}`,
      );
      await held[i].close();
    }
    say("");
    say(
      failures === 0
        ? "Everything worked through both gateways and the failover."
        : `${failures} check(s) failed.`,
    );
  } finally {
    say("tearing the lab down ...");
    for (const m of masqs) if (m.proc.running) await m.stop();
    await net.destroy();
    rmSync(tmp, { recursive: true, force: true });
    const left = net.gateways.flatMap((g) => leftInStateDir(g.gate.ns));
    if (left.length === 0) say("done: no namespace, process, route or file of the lab is left.");
    else {
      say(`left behind: ${left.join(", ")}`);
      failures++;
    }
  }
  return failures === 0 ? 0 : 1;
}
