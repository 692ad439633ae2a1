// Every inside host of a lab fetches one body from the Internet host's HTTP server at the same
// time (curl piped into sha256sum), and each body must arrive byte-exact.
import assert from "node:assert/strict";
import { bodySha256 } from "../../src/lab/body.ts";
import type { MasqNetwork } from "../../src/lab/netns.ts";

export async function fetchFromEveryBox(net: MasqNetwork, size: number): Promise<void> {
  const want = bodySha256(size);
  const results = await Promise.all(
    net.inside.map((box) =>
      net.lab.exec(
        box.ns,
        ["sh", "-c", `curl -sS --max-time 60 http://${net.inet.addr}/bytes/${size} | sha256sum`],
        { timeoutMs: 70_000 },
      ),
    ),
  );
  for (const [i, r] of results.entries()) {
    assert.equal(r.code, 0, `${net.inside[i].name}: ${r.stderr}`);
    assert.equal(r.stdout.split(" ")[0], want, `${net.inside[i].name} body differs`);
  }
}
