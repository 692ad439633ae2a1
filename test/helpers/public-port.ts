// What the Internet host's page says about a fetch through masq: the public port it came from
// (the lab's service answers "you came from ADDRESS:PORT").
import assert from "node:assert/strict";
import type { MasqNetwork } from "../../src/lab/netns.ts";

/** The inside host `box` (A-box by default) fetches the page; the public port the server saw. */
export async function publicPortOfFetch(net: MasqNetwork, box = 0): Promise<number> {
  const r = await net.lab.exec(
    net.inside[box].ns,
    ["curl", "-sS", "--max-time", "10", `http://${net.inet.addr}/`],
    {
      timeoutMs: 15_000,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  const m = new RegExp(`you came from ${net.publicAddr.replaceAll(".", "\\.")}:(\\d+)`).exec(r.stdout);
  assert.ok(m, r.stdout);
  return Number(m[1]);
}
