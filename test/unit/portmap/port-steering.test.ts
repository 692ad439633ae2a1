// Interface mode: NAT-PMP/PCP grant the port asked for beyond masq's range, with rules of its
// own (port-steering.ts), against a real engine and a recording stand-in for the host's rules.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseProcNetPorts } from "../../../src/host/local-ports.ts";
import { defaultPortmapConfig } from "../../../src/portmap/config.ts";
import { buildPcpRequest, OPCODE_MAP, PcpResult, parsePcpResponse } from "../../../src/portmap/pcp.ts";
import { MappedPortSteering } from "../../../src/portmap/port-steering.ts";
import { PortmapService, silentLog } from "../../../src/portmap/service.ts";
import { ip } from "../../helpers/packets.ts";
import { makeEngine } from "../nat/engine-helpers.ts";
import { mapReq } from "./natpmp-requests.ts";

const A = ip("192.168.0.2");
const RANGE = { first: 61000, last: 65534 };

/** The external port of a NAT-PMP mapping answer (0 when refused). */
function external(b: Uint8Array | undefined): number {
  assert.ok(b, "an answer");
  return new DataView(b.buffer, b.byteOffset).getUint16(10);
}

function setup(
  opts: { inUse?: (proto: string, port: number) => string | undefined; failAdd?: boolean } = {},
) {
  const engine = makeEngine({ mode: "interface", ports: { tcp: RANGE, udp: RANGE, icmp: RANGE } });
  engine.tick(1000);
  const rules: string[] = [];
  const log: string[] = [];
  const steering = new MappedPortSteering({
    range: RANGE,
    allowLowPorts: false,
    log: silentLog,
    inUse: async (proto, port) => opts.inUse?.(proto, port),
    steer: {
      add: async (proto, first) => {
        if (opts.failAdd) throw new Error("ip rule add failed");
        log.push(`add ${proto}/${first}`);
        rules.push(`${proto}/${first}`);
      },
      remove: async (proto, first) => {
        log.push(`remove ${proto}/${first}`);
        rules.splice(rules.indexOf(`${proto}/${first}`), 1);
      },
    },
  });
  const svc = new PortmapService({
    engine,
    config: { ...defaultPortmapConfig(), enabled: true, minLifetime: 1 },
    insideNetworks: engine.config.inside,
    steering,
  });
  /** Lets the queued rule changes run. */
  const settle = () => new Promise((r) => setTimeout(r, 10));
  return { engine, svc, steering, rules, log, settle };
}

describe("interface mode: the port asked for, beyond masq's range (NAT-PMP, PCP)", () => {
  it("is granted with a rule of its own, which goes when the mapping is deleted", async () => {
    const { svc, rules, settle } = setup();
    assert.equal(external(await svc.answer(mapReq(2, 8080, 18080, 120), A)), 18080);
    assert.deepEqual(rules, ["tcp/18080"]);
    assert.equal(external(await svc.answer(mapReq(1, 3074, 3074, 120), A)), 3074, "the Xbox's UDP 3074");
    assert.deepEqual(rules, ["tcp/18080", "udp/3074"]);
    // A renewal keeps the port and its one rule.
    assert.equal(external(await svc.answer(mapReq(2, 8080, 18080, 120), A)), 18080);
    assert.deepEqual(rules, ["tcp/18080", "udp/3074"]);
    await svc.answer(mapReq(2, 8080, 18080, 0), A);
    await settle();
    assert.deepEqual(rules, ["udp/3074"]);
  });

  it("PCP MAP alike: the PlayStation's TCP 9308 is granted with its rule, deleted with it", async () => {
    const { svc, rules, settle } = setup();
    const nonce = new Uint8Array(12).fill(7);
    const req = (lifetime: number) =>
      buildPcpRequest({
        opcode: OPCODE_MAP,
        lifetime,
        clientAddr: A,
        nonce,
        protocol: 6,
        internalPort: 9308,
        suggestedExternalPort: 9308,
      });
    const r = parsePcpResponse((await svc.answer(req(600), A)) ?? new Uint8Array());
    assert.deepEqual([r?.result, r?.externalPort], [PcpResult.SUCCESS, 9308]);
    assert.deepEqual(rules, ["tcp/9308"]);
    await svc.answer(req(0), A);
    await settle();
    assert.deepEqual(rules, []);
  });

  it("a mapping that lapses takes its rule with it (at the next sweep)", async () => {
    const { engine, svc, rules, settle } = setup();
    assert.equal(external(await svc.answer(mapReq(2, 8080, 18080, 2), A)), 18080);
    engine.tick(1000 + 5000);
    svc.sweep();
    await settle();
    assert.deepEqual(rules, []);
  });

  it("a port the gateway uses, 65535, a port below 1024 or a rule that fails: another port, no rule", async () => {
    const { svc, rules, settle } = setup({
      inUse: (proto, port) => (proto === "tcp" && port === 22222 ? "the gateway listens" : undefined),
    });
    for (const asked of [22222, 65535, 80]) {
      const got = external(await svc.answer(mapReq(2, 9000 + (asked % 1000), asked, 120), A));
      assert.ok(got >= RANGE.first && got <= RANGE.last, `${asked} -> ${got}`);
    }
    await settle();
    assert.deepEqual(rules, []);
    const failing = setup({ failAdd: true });
    const got = external(await failing.svc.answer(mapReq(2, 8080, 18080, 120), A));
    assert.ok(got >= RANGE.first, `the rule failed: ${got}`);
  });

  it("a port another host holds is not given twice; its rule stays for the holder", async () => {
    const { svc, rules, settle } = setup();
    assert.equal(external(await svc.answer(mapReq(2, 8080, 18080, 120), A)), 18080);
    const B = ip("192.168.0.3");
    const other = external(await svc.answer(mapReq(2, 8080, 18080, 120), B));
    assert.notEqual(other, 18080);
    await settle();
    assert.deepEqual(rules, ["tcp/18080"]);
  });

  it("ports in masq's own range and deletions need no rule; handle alone (no steering) is as before", async () => {
    const { svc, log } = setup();
    assert.equal(external(await svc.answer(mapReq(2, 8080, 62000, 120), A)), 62000);
    await svc.answer(mapReq(2, 8081, 18081, 0), A);
    assert.deepEqual(log, []);
    assert.notEqual(external(svc.handle(mapReq(2, 8082, 18082, 120), A)), 18082, "handle alone: not steered");
  });
});

describe("the gateway's own ports (/proc/net)", () => {
  it("TCP: listening sockets only; UDP: every socket; any local address, v4 or v6", () => {
    const tcp = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
      "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1",
      "   2: 0200A8C0:9C40 0A00A8C0:0050 01 00000000:00000000 00:00000000 00000000     0        0 3 1",
    ].join("\n");
    assert.deepEqual([...parseProcNetPorts(tcp, "tcp")], [22, 8080]);
    const udp6 = [
      "  sl  local_address                         remote_address                        st ...",
      "   0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 ...",
    ].join("\n");
    assert.deepEqual([...parseProcNetPorts(udp6, "udp")], [53]);
    assert.deepEqual([...parseProcNetPorts("", "udp")], []);
  });
});
