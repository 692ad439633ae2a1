// End to end: deterministic NAT scaled out (`[cgnat] nodes = 2`, `node`; RFC 7422) over two masq
// gateways sharing one pool behind a router's ECMP multipath default route that hashes by inside
// source (src/lab/scaleout.ts builds it, as `masq lab --gateways 2` does). Each box's traffic
// leaves through the gateway the router's kernel picks, on that gateway's part of the pool and in
// the range the whole pool's function gives the box there; whois asked of either gateway answers
// for both gateways' ports; when one gateway fails its boxes' new connections go through the
// other, while the other's boxes keep an established connection.
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { controlGet } from "../../src/control/client.ts";
import type { WhoisReply } from "../../src/control/whois.ts";
import type { MasqProcess } from "../../src/lab/masq-process.ts";
import {
  buildScaleoutNetwork,
  failGateway,
  fetchFrom,
  holdConnection,
  nodeOfAddress,
  rangeThrough,
  routedNode,
  type ScaleoutBox,
  type ScaleoutNetwork,
  type SeenEndpoint,
  startInet,
  startScaleoutMasq,
} from "../../src/lab/scaleout.ts";
import { waitUntil } from "../../src/lab/wait.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;

describe("cgnat scale-out: two deterministic gateways behind ECMP", {
  skip: root ? false : "needs root",
}, () => {
  let net: ScaleoutNetwork;
  let tmp: string;
  let masqs: MasqProcess[] = [];
  const nodeOf = new Map<ScaleoutBox, number>();

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqso-"));
    net = await buildScaleoutNetwork("masqso");
    await startInet(net);
    masqs = await startScaleoutMasq(net, tmp);
    for (const box of net.boxes) nodeOf.set(box, await routedNode(net.lab, net.router.ns, box.addr));
  });

  after(async () => {
    for (const m of masqs.slice(1)) if (m.proc.running) await m.stop();
    await tearDown({ masq: masqs[0], net, tmp });
  });

  /** A fetch from `box` that must succeed: what the Internet host saw. */
  async function fetchOk(box: ScaleoutBox): Promise<SeenEndpoint> {
    const seen = await fetchFrom(net, box);
    assert.ok(typeof seen !== "string", `${box.name}: ${seen}`);
    return seen;
  }

  function assertInRange(seen: SeenEndpoint, box: ScaleoutBox, node: number): void {
    const want = rangeThrough(net, box, node);
    assert.equal(seen.addr, want.addr, `${box.name} through node ${node}`);
    assert.ok(
      seen.port >= want.first && seen.port <= want.last,
      `${box.name}: port ${seen.port} outside its range ${want.first}-${want.last} on node ${node}`,
    );
  }

  it("ECMP splits the boxes over both gateways, each box in its computed range on its gateway's address", async () => {
    assert.deepEqual(new Set(nodeOf.values()), new Set([0, 1]), "the router uses both gateways");
    for (const box of net.boxes) {
      const node = nodeOf.get(box)!;
      const seen = await fetchOk(box);
      assert.equal(nodeOfAddress(net, seen.addr), node, `${box.name} left through the gateway ECMP chose`);
      assertInRange(seen, box, node);
    }
  });

  it("whois asked of either gateway answers for both gateways' ports", async () => {
    for (const box of net.boxes)
      for (const node of [0, 1]) {
        const r = rangeThrough(net, box, node);
        for (const m of masqs) {
          // The control API straight (what `masq whois --json` prints), without a CLI per question.
          const q = new URLSearchParams({ address: r.addr, port: String(r.last) });
          const w = (await controlGet(m.socket, `/v1/whois?${q}`)) as WhoisReply;
          assert.deepEqual(
            w.holders.map((h) => [h.inside, h.node, h.block.first, h.block.last]),
            [[box.addr, node, r.first, r.last]],
            JSON.stringify(w),
          );
        }
      }
    // The CLI's text, asked of node 1 about node 0's part.
    const a = rangeThrough(net, net.boxes[0], 0);
    const text = await masqs[1].cli(["whois", `${a.addr}:${a.first}`]);
    assert.match(
      text,
      new RegExp(
        `${net.boxes[0].addr.replaceAll(".", "\\.")} \\(block ${a.first}-${a.last}, deterministic, through gateway node 0\\)`,
      ),
    );
    assert.match(await masqs[1].cli(["whois", `${a.addr}:1`]), /no inside host held it/);
  });

  it("when a gateway fails its boxes move to the other; the other's keep an established connection", async () => {
    const victim = nodeOf.get(net.boxes[1])!;
    const survivor = 1 - victim;
    const stays = net.boxes.filter((b) => nodeOf.get(b) === survivor);
    const moves = net.boxes.filter((b) => nodeOf.get(b) === victim);
    const held = await Promise.all(stays.map((b) => holdConnection(net, b)));
    try {
      await failGateway(net, masqs[victim], victim);
      for (const box of moves) {
        const seen = await waitUntil(
          `${box.name}'s new connection through node ${survivor}`,
          async () => {
            const s = await fetchFrom(net, box);
            return typeof s !== "string" && s;
          },
          { timeoutMs: 30_000 },
        );
        assertInRange(seen, box, survivor);
      }
      for (const [i, box] of stays.entries()) {
        const again = await held[i].again();
        assert.deepEqual(again, held[i].first, `${box.name}'s held connection`);
        assertInRange(again, box, survivor);
      }
    } finally {
      for (const h of held) await h.close();
    }
  });
});
