// Each way a port mapping can fail, against a real engine, answered by both protocols with the
// result code the error table gives its code (src/errors/codes.ts), and the code named in the
// server's log. Before the codes, PCP answered every engine refusal with NO_RESOURCES (or, with
// PREFER_FAILURE, CANNOT_PROVIDE_EXTERNAL whatever the cause).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type ErrorCode, natpmpResultOf, pcpResultOf } from "../../../src/errors/codes.ts";
import type { EngineConfig } from "../../../src/nat/config.ts";
import { defaultPortmapConfig, type PortmapConfig } from "../../../src/portmap/config.ts";
import { NatPmpResult } from "../../../src/portmap/natpmp.ts";
import {
  buildPcpRequest,
  OPCODE_MAP,
  OPTION_PREFER_FAILURE,
  PcpResult,
  parsePcpResponse,
} from "../../../src/portmap/pcp.ts";
import { PortmapService } from "../../../src/portmap/service.ts";
import { ip, udp } from "../../helpers/packets.ts";
import { makeEngine, REMOTE, run } from "../nat/engine-helpers.ts";

const A = ip("192.168.0.2");
const B = ip("192.168.0.3");
const PREFER_FAILURE = { code: OPTION_PREFER_FAILURE, data: new Uint8Array(0) };

function pcpMap(client: number, internalPort: number, suggested = 0, preferFailure = false): Uint8Array {
  return buildPcpRequest({
    opcode: OPCODE_MAP,
    lifetime: 3600,
    clientAddr: client,
    nonce: Uint8Array.from({ length: 12 }, (_, i) => client + i),
    protocol: 17,
    internalPort,
    suggestedExternalPort: suggested,
    ...(preferFailure ? { options: [PREFER_FAILURE] } : {}),
  });
}

function natpmpMap(internalPort: number, suggested = 0): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[1] = 1; // map UDP
  dv.setUint16(4, internalPort);
  dv.setUint16(6, suggested);
  dv.setUint32(8, 3600);
  return b;
}

function setup(over: Partial<PortmapConfig> = {}, engineOver: Partial<EngineConfig> = {}) {
  const engine = makeEngine(engineOver);
  engine.tick(1000);
  const why: string[] = [];
  const svc = new PortmapService({
    engine,
    config: { ...defaultPortmapConfig(), enabled: true, ...over },
    insideNetworks: engine.config.inside,
    nowMs: () => 0,
    log: { info() {}, warn() {}, debug: (o) => why.push(String((o as { why?: string }).why)) },
  });
  const pcp = (req: Uint8Array, src: number) => {
    const r = parsePcpResponse(svc.handle(req, src) ?? new Uint8Array(0));
    assert.ok(r, "expected a PCP answer");
    return r.result;
  };
  const natpmp = (req: Uint8Array, src: number) => {
    const b = svc.handle(req, src);
    assert.ok(b && b.length === 16, "expected a NAT-PMP mapping answer");
    return new DataView(b.buffer, b.byteOffset).getUint16(2);
  };
  return { engine, svc, why, pcp, natpmp };
}

/** The refusal was for `code`, with the result the table gives it and the one the RFC names. */
function refused(
  result: number,
  code: ErrorCode,
  why: string[],
  expected: { pcp?: number; natpmp?: number },
) {
  assert.ok(
    why.some((w) => w.startsWith(code)),
    `expected ${code} in the log, got ${why.join(" | ")}`,
  );
  if (expected.pcp !== undefined) {
    assert.equal(result, expected.pcp);
    assert.equal(result, pcpResultOf(code));
  }
  if (expected.natpmp !== undefined) {
    assert.equal(result, expected.natpmp);
    assert.equal(result, natpmpResultOf(code));
  }
}

describe("port-mapping refusals carry the code of their cause", () => {
  it("the host's share of the ports (limits.max_ports_per_host): USER_EX_QUOTA / out of resources", () => {
    const s = setup({}, { maxPortsPerHost: 1 });
    assert.equal(s.pcp(pcpMap(A, 7000), A), PcpResult.SUCCESS);
    refused(s.pcp(pcpMap(A, 7001), A), "MASQ_ERR_HOST_PORT_QUOTA", s.why, { pcp: PcpResult.USER_EX_QUOTA });
    s.why.length = 0;
    refused(s.natpmp(natpmpMap(7002), A), "MASQ_ERR_HOST_PORT_QUOTA", s.why, {
      natpmp: NatPmpResult.OUT_OF_RESOURCES,
    });
  });

  it("with PREFER_FAILURE too: a quota is USER_EX_QUOTA, not CANNOT_PROVIDE_EXTERNAL", () => {
    const s = setup({}, { maxPortsPerHost: 1 });
    assert.equal(s.pcp(pcpMap(A, 7000), A), PcpResult.SUCCESS);
    refused(s.pcp(pcpMap(A, 7001, 62000, true), A), "MASQ_ERR_HOST_PORT_QUOTA", s.why, {
      pcp: PcpResult.USER_EX_QUOTA,
    });
  });

  it("the mapping table full (limits): NO_RESOURCES / out of resources", () => {
    const s = setup({}, { maxMappings: 1 });
    assert.equal(run(s.engine, udp({ src: "192.168.0.3", dst: REMOTE, sport: 1000, dport: 53 })).verdict, 0);
    refused(s.pcp(pcpMap(A, 7000), A), "MASQ_ERR_MAPPING_TABLE_FULL", s.why, { pcp: PcpResult.NO_RESOURCES });
    s.why.length = 0;
    refused(s.natpmp(natpmpMap(7000), A), "MASQ_ERR_MAPPING_TABLE_FULL", s.why, {
      natpmp: NatPmpResult.OUT_OF_RESOURCES,
    });
  });

  it("the host table full (limits.max_hosts): NO_RESOURCES", () => {
    const s = setup({}, { maxHosts: 1 });
    assert.equal(s.pcp(pcpMap(B, 7000), B), PcpResult.SUCCESS);
    refused(s.pcp(pcpMap(A, 7000), A), "MASQ_ERR_HOST_TABLE_FULL", s.why, { pcp: PcpResult.NO_RESOURCES });
  });

  it("no free port in the range: NO_RESOURCES / out of resources", () => {
    const two = { first: 62000, last: 62001 };
    const s = setup({ maxMappings: 10 }, { ports: { tcp: two, udp: two, icmp: two } });
    assert.equal(s.pcp(pcpMap(B, 7000), B), PcpResult.SUCCESS);
    assert.equal(s.pcp(pcpMap(B, 7001), B), PcpResult.SUCCESS);
    refused(s.pcp(pcpMap(A, 7000), A), "MASQ_ERR_PORTS_EXHAUSTED", s.why, { pcp: PcpResult.NO_RESOURCES });
    s.why.length = 0;
    refused(s.natpmp(natpmpMap(7001), A), "MASQ_ERR_PORTS_EXHAUSTED", s.why, {
      natpmp: NatPmpResult.OUT_OF_RESOURCES,
    });
  });

  it("portmap.max_per_host and portmap.max_mappings: USER_EX_QUOTA and NO_RESOURCES", () => {
    const s = setup({ maxPerHost: 1, maxMappings: 2 });
    assert.equal(s.pcp(pcpMap(A, 7000), A), PcpResult.SUCCESS);
    refused(s.pcp(pcpMap(A, 7001), A), "MASQ_ERR_PORTMAP_HOST_QUOTA", s.why, {
      pcp: PcpResult.USER_EX_QUOTA,
    });
    assert.equal(s.pcp(pcpMap(B, 7000), B), PcpResult.SUCCESS);
    s.why.length = 0;
    const C = ip("192.168.0.4");
    refused(s.natpmp(natpmpMap(7000), C), "MASQ_ERR_PORTMAP_FULL", s.why, {
      natpmp: NatPmpResult.OUT_OF_RESOURCES,
    });
    s.why.length = 0;
    refused(s.pcp(pcpMap(C, 7000), C), "MASQ_ERR_PORTMAP_FULL", s.why, { pcp: PcpResult.NO_RESOURCES });
  });

  it("another client's mapping: NOT_AUTHORIZED in both", () => {
    const s = setup();
    assert.equal(s.natpmp(natpmpMap(7000), A), NatPmpResult.SUCCESS);
    refused(s.pcp(pcpMap(A, 7000), A), "MASQ_ERR_MAPPING_OWNED", s.why, { pcp: PcpResult.NOT_AUTHORIZED });
  });

  it("PREFER_FAILURE: a taken port or an endpoint mapped elsewhere is CANNOT_PROVIDE_EXTERNAL", () => {
    const s = setup();
    assert.equal(s.pcp(pcpMap(B, 7000, 62000), B), PcpResult.SUCCESS);
    refused(s.pcp(pcpMap(A, 7000, 62000, true), A), "MASQ_ERR_PORT_IN_USE", s.why, {
      pcp: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    });
    // A's 1000/udp already goes out on a port of its own (a flow): another one cannot be had.
    run(s.engine, udp({ src: "192.168.0.2", dst: REMOTE, sport: 1000, dport: 53 }));
    s.why.length = 0;
    refused(s.pcp(pcpMap(A, 1000, 62001, true), A), "MASQ_ERR_ALREADY_MAPPED", s.why, {
      pcp: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    });
  });

  it("PREFER_FAILURE with a suggestion masq cannot receive (interface mode, off its range)", () => {
    const s = setup({}, { mode: "interface" });
    refused(s.pcp(pcpMap(A, 7000, 80, true), A), "MASQ_ERR_SUGGESTION_UNAVAILABLE", s.why, {
      pcp: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    });
    assert.equal(s.engine.pinList().length, 0, "the other endpoint it got is given back");
  });
});
