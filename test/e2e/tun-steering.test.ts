// Multi-queue TUNs with masq's steering programs attached (TUNSETSTEERINGEBPF), in a namespace
// of their own: the kernel puts each packet routed into a device on the queue the TypeScript model
// names (test/e2e/fixtures/steered-queues.ts sends and reads): from inside by the source
// address, from outside by the destination port's slice, an overridden port to its worker.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  insideQueue,
  OVERRIDE_ENTRIES,
  outsideQueue,
  overrideKey,
} from "../../src/datapath/steering-model.ts";
import { Lab } from "../../src/lab/netns.ts";
import { DEFAULT_INTERFACE_PORTS } from "../../src/nat/config.ts";

const QUEUES = 2;
const SOURCES = Array.from({ length: 16 }, (_, i) => `10.9.0.${i + 1}`);
const PORTS = [61000, 61001, 63266, 63267, 64000, 65534, 8080];

describe("multi-queue TUN steering", () => {
  let lab: Lab;
  let ns: string;
  before(async () => {
    lab = new Lab({ prefix: "masqmq" });
    ns = await lab.addNamespace("q");
  });
  after(async () => {
    await lab.destroy();
  });

  it("each packet is read from the queue the model names", async () => {
    const args = [QUEUES, DEFAULT_INTERFACE_PORTS, SOURCES, PORTS].map((a) => JSON.stringify(a));
    const out = await lab.run(
      ns,
      [process.execPath, "--import", "tsx", "test/e2e/fixtures/steered-queues.ts", ...args],
      {
        timeoutMs: 20_000,
      },
    );
    const packets = out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { dev: string; queue: number; hex: string });
    assert.equal(packets.length, SOURCES.length + PORTS.length, out);
    const overrides = new Uint32Array(OVERRIDE_ENTRIES);
    overrides[overrideKey(17, 8080)] = QUEUES;
    const plan = {
      queues: QUEUES,
      ports: { tcp: DEFAULT_INTERFACE_PORTS, udp: DEFAULT_INTERFACE_PORTS, icmp: DEFAULT_INTERFACE_PORTS },
    };
    const seen = new Set<number>();
    for (const { dev, queue, hex } of packets) {
      const p = Buffer.from(hex, "hex");
      const want =
        dev === "inside"
          ? insideQueue(p, 0, p.length, QUEUES)
          : outsideQueue(p, 0, p.length, plan, overrides) % QUEUES;
      assert.equal(queue, want, `${dev} ${hex}`);
      if (dev === "inside") seen.add(queue);
    }
    assert.equal(seen.size, QUEUES, "16 sources spread over both queues");
  });
});
