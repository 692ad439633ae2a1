// The NAT log's UDP sender closes only once what it was handed has left: the records written
// just before a stop (the end of the table's deletions) reach the collector.
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { describe, it } from "node:test";
import { UdpSender } from "../../../src/natlog/sender.ts";

describe("UdpSender", () => {
  it("delivers what was sent right before close, then drops what comes after", async () => {
    const rx = createSocket("udp4");
    await new Promise<void>((resolve) => rx.bind(0, "127.0.0.1", () => resolve()));
    const port = rx.address().port;
    const got: string[] = [];
    const all = new Promise<void>((resolve) =>
      rx.on("message", (m) => {
        got.push(m.toString());
        if (got.length === 3) resolve();
      }),
    );
    const tx = new UdpSender(`udp://127.0.0.1:${port}`, "127.0.0.1", port);
    for (const m of ["a", "b", "c"]) tx.send(Buffer.from(m));
    tx.close();
    tx.send(Buffer.from("late"));
    await all;
    await new Promise((r) => setTimeout(r, 50));
    rx.close();
    assert.deepEqual(got.sort(), ["a", "b", "c"]);
    assert.equal(tx.counters.sent, 3);
  });
});
