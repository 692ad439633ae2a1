// The end-to-end benchmark's bookkeeping: how rounds combine into the printed table and the
// --json figures (medians with ratios; counts of failures summed, without a ratio), and the
// difference of masq's counters around a measurement.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { failuresText } from "../../../bench/lib/http.ts";
import { countersDelta, countersText, type MasqCounters } from "../../../bench/lib/masq-stats.ts";
import { emptySamples, jsonFigures, table } from "../../../bench/lib/report.ts";

describe("bench report", () => {
  it("takes medians with a ratio, and sums counts of failures without one", () => {
    const s = emptySamples();
    s.http500_rps.kernel.push(12000, 10000, 11000);
    s.http500_rps.masq.push(700, 600, 650);
    s.short_failed.kernel.push(0, 0, 0);
    s.short_failed.masq.push(5, 0, 7);
    const j = jsonFigures(s);
    assert.equal(j.kernel_http500_req_per_s, 11000);
    assert.equal(j.masq_http500_req_per_s, 650);
    assert.equal(j.http500_rps_ratio, 650 / 11000);
    assert.equal(j.kernel_short_conns_failed, 0);
    assert.equal(j.masq_short_conns_failed, 12);
    assert.equal("short_failed_ratio" in j, false);
    // Keys kept from before the HTTP figures, null when not measured.
    assert.equal(j.tcp1_ratio, null);
    assert.equal(j.kernel_udp_pps, null);
    const perRound = j.per_round as Record<string, number[]>;
    assert.deepEqual(perRound.masq_short_conns_failed, [5, 0, 7]);

    const t = table(s, 3);
    const row = (label: string) => t.split("\n").find((l) => l.startsWith(label)) ?? "";
    assert.match(row("HTTP 100 KB, 500 conns (req/s)"), /11000\s+650\s+0\.06$/);
    assert.match(row("  failed (all rounds)"), /0\s+12\s+—$/);
    assert.match(row("TCP, 1 stream"), /—\s+—\s+—$/);
  });

  it("gives masq's counters as changes over the measurement, the ports held as a level", () => {
    const a: MasqCounters = {
      drops: { host_port_quota: 10, no_mapping: 3 },
      queueDrops: { masq0: 5, "masq0-out": 100 },
      rxWakeups: 1000,
      rxBudgetHits: 10,
      mappings: 400,
      mappingsCreated: 900,
      traffic: {
        "masq0-out": {
          rxPackets: 100,
          rxBytes: 150_000,
          rxGso: 0,
          txPackets: 100,
          txGsoUdp: 0,
          txQueueFull: 0,
        },
      },
    };
    const b: MasqCounters = {
      drops: { host_port_quota: 1135, no_mapping: 3, ports_exhausted: 2 },
      queueDrops: { masq0: 5, "masq0-out": 18310 },
      rxWakeups: 1587,
      rxBudgetHits: 430,
      mappings: 12500,
      mappingsCreated: 13000,
      traffic: {
        "masq0-out": {
          rxPackets: 1100,
          rxBytes: 1_650_000,
          rxGso: 10,
          txPackets: 1090,
          txGsoUdp: 0,
          txQueueFull: 5,
        },
      },
    };
    const d = countersDelta(a, b);
    assert.deepEqual(d, {
      drops: { host_port_quota: 1125, ports_exhausted: 2 },
      queueDrops: { masq0: 0, "masq0-out": 18210 },
      rxWakeups: 587,
      rxBudgetHits: 420,
      mappings: 12500,
      mappingsCreated: 12100,
      traffic: {
        "masq0-out": {
          rxPackets: 1000,
          rxBytes: 1_500_000,
          rxGso: 10,
          txPackets: 990,
          txGsoUdp: 0,
          txQueueFull: 5,
        },
      },
    });
    assert.equal(
      countersText(d),
      "kernelQueueDrops 18210 (masq0 0, masq0-out 18210), drops host_port_quota 1125, ports_exhausted 2, read budget hit in 420 of 587 wake-ups, 12100 outside ports taken, 12500 held at the end (mappings, all protocols), masq0-out read 1000 packets of 1500 B on average (10 GSO), wrote 990, 5 refused",
    );
  });

  it("names only the failure reasons that occurred", () => {
    const none = {
      refused: 0,
      unreachable: 0,
      reset: 0,
      timeout_connect: 0,
      timeout_response: 0,
      bad_response: 0,
      other: 0,
    };
    assert.equal(failuresText(none), "");
    assert.equal(
      failuresText({ ...none, refused: 184, timeout_connect: 941 }),
      "refused 184, connect timeout 941",
    );
  });
});
