// PCP MAP for IPv6 pinholes (RFC 6887, a simple firewall's PCP server, RFC 6092): requests as
// bytes, answered against a real Ip6Filter whose verdicts show what each pinhole admits.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatIpv6, parseIpv6 } from "../../../src/ipv6fw/addr6.ts";
import { IPPROTO_TCP, IPPROTO_UDP, Ip6Filter } from "../../../src/ipv6fw/filter.ts";
import { PCP_MIN_LIFETIME, Pcp6Service, type Pcp6Settings } from "../../../src/ipv6fw/pcp6.ts";
import { DROP, FORWARD, SIDE_OUTSIDE } from "../../../src/nat/verdicts.ts";
import {
  buildPcpRequest,
  OPCODE_ANNOUNCE,
  OPCODE_MAP,
  OPCODE_PEER,
  OPTION_FILTER,
  OPTION_PREFER_FAILURE,
  OPTION_THIRD_PARTY,
  PcpResult,
  parsePcpResponse,
} from "../../../src/portmap/pcp.ts";
import { tcp, udp } from "../../helpers/ipv6-packets.ts";

const A = parseIpv6("2001:db8:1::10") as Uint8Array;
const B = parseIpv6("2001:db8:1::11") as Uint8Array;
const STRANGER = parseIpv6("2001:db8:99::1") as Uint8Array;
const REMOTE = "2001:db8:2::10";
const SYN = 0x02;
const NONCE = Uint8Array.from({ length: 12 }, (_, i) => i + 1);
const OTHER_NONCE = Uint8Array.from({ length: 12 }, (_, i) => 100 + i);

function setup(over: Partial<Pcp6Settings> = {}) {
  let now = 1_000_000;
  const filter = new Ip6Filter({ capacity: 256, filtering: "address-port-dependent" });
  const svc = new Pcp6Service({
    filter,
    settings: { maxPerHost: 4, maxPinholes: 8, maxLifetime: 3600, thirdParty: false, ...over },
    insideNetworks: ["2001:db8:1::/64"],
    nowMs: () => now,
  });
  let remotePort = 50_000;
  /**
   * An inbound packet from the Internet host to `to` port `port`, each from a new remote port (a
   * SYN through a pinhole makes a flow, which would admit the next one): the filter's verdict.
   */
  const inbound = (to: Uint8Array, proto: number, port: number): number => {
    remotePort++;
    const dst = formatIpv6(to);
    const b =
      proto === IPPROTO_TCP ? tcp(REMOTE, remotePort, dst, port, SYN) : udp(REMOTE, remotePort, dst, port);
    return filter.process(b, 0, b.length, now, SIDE_OUTSIDE);
  };
  const ask = (src: Uint8Array, r: Partial<Parameters<typeof buildPcpRequest>[0]>) => {
    const raw = svc.handle(
      buildPcpRequest({
        opcode: OPCODE_MAP,
        lifetime: 600,
        clientAddr: src,
        nonce: NONCE,
        protocol: 6,
        internalPort: 8080,
        ...r,
      }),
      src,
    );
    return raw === undefined ? undefined : parsePcpResponse(raw);
  };
  return { svc, filter, inbound, ask, advance: (ms: number) => (now += ms) };
}

describe("PCP MAP for IPv6 pinholes (RFC 6887 §11, a firewall)", () => {
  it("opens a pinhole to the host's own address and port: the external endpoint is the internal one", () => {
    const { svc, inbound, ask } = setup();
    assert.equal(inbound(A, IPPROTO_TCP, 8080), DROP);
    const r = ask(A, { suggestedExternalPort: 0 });
    assert.equal(r?.result, PcpResult.SUCCESS);
    assert.equal(r?.opcode, OPCODE_MAP);
    assert.deepEqual([...(r?.nonce ?? [])], [...NONCE]);
    assert.equal(r?.internalPort, 8080);
    assert.equal(r?.externalPort, 8080);
    assert.deepEqual([...(r?.externalAddr6 ?? [])], [...A]);
    assert.equal(r?.lifetime, 600);
    assert.equal(inbound(A, IPPROTO_TCP, 8080), FORWARD);
    assert.equal(inbound(A, IPPROTO_TCP, 8081), DROP, "another port stays closed");
    assert.equal(inbound(A, IPPROTO_UDP, 8080), DROP, "another protocol stays closed");
    assert.equal(inbound(B, IPPROTO_TCP, 8080), DROP, "another host stays closed");
    const pins = svc.pins();
    assert.equal(pins.length, 1);
    assert.deepEqual(pins[0].inside, { addr: "2001:db8:1::10", port: 8080 });
    assert.deepEqual(pins[0].outside, pins[0].inside);
    assert.equal(pins[0].origin, "ipv6-pcp");
    assert.equal(pins[0].expiresInSec, 600);
    const st = svc.stats();
    assert.equal(st.pinholes_created, 1);
    assert.equal(st.pinholes_active, 1);
    assert.equal(st.pcp_result_success, 1);
  });

  it("clamps the lifetime to [120 s, ipv6.pcp_max_lifetime] (§15) and lapses at its end", () => {
    const { svc, inbound, ask, advance } = setup({ maxLifetime: 3600 });
    assert.equal(ask(A, { lifetime: 5 })?.lifetime, PCP_MIN_LIFETIME);
    assert.equal(ask(A, { lifetime: 99_999, protocol: 17, internalPort: 5000 })?.lifetime, 3600);
    advance(PCP_MIN_LIFETIME * 1000 - 1);
    assert.equal(inbound(A, IPPROTO_TCP, 8080), FORWARD);
    advance(1);
    assert.equal(inbound(A, IPPROTO_TCP, 8080), DROP, "lapsed in the filter without the service");
    assert.equal(inbound(A, IPPROTO_UDP, 5000), FORWARD);
    assert.deepEqual(
      svc.pins().map((p) => p.protocol),
      ["udp"],
    );
  });

  it("renews with the same nonce; another client's nonce is NOT_AUTHORIZED (§11.3)", () => {
    const { svc, inbound, ask, advance } = setup();
    ask(A, { lifetime: 200 });
    advance(150_000);
    assert.equal(ask(A, { lifetime: 200 })?.result, PcpResult.SUCCESS);
    advance(150_000);
    assert.equal(inbound(A, IPPROTO_TCP, 8080), FORWARD, "renewed from its renewal");
    assert.equal(svc.stats().pinholes_renewed, 1);
    const r = ask(A, { nonce: OTHER_NONCE });
    assert.equal(r?.result, PcpResult.NOT_AUTHORIZED);
    assert.equal(r?.lifetime, 1800, "a long error lifetime");
  });

  it("deletes with lifetime 0: the pinhole closes; deleting what is not there succeeds (§15)", () => {
    const { svc, inbound, ask } = setup();
    ask(A, {});
    ask(A, { protocol: 17, internalPort: 5000 });
    assert.equal(ask(A, { lifetime: 0, nonce: OTHER_NONCE })?.result, PcpResult.NOT_AUTHORIZED);
    assert.equal(inbound(A, IPPROTO_TCP, 8080), FORWARD);
    const r = ask(A, { lifetime: 0 });
    assert.equal(r?.result, PcpResult.SUCCESS);
    assert.equal(r?.lifetime, 0);
    assert.equal(inbound(A, IPPROTO_TCP, 8080), DROP);
    assert.equal(inbound(A, IPPROTO_UDP, 5000), FORWARD, "only the one named");
    // Protocol 0 and port 0: every pinhole of the address.
    assert.equal(ask(A, { lifetime: 0, protocol: 0, internalPort: 0 })?.result, PcpResult.SUCCESS);
    assert.equal(inbound(A, IPPROTO_UDP, 5000), DROP);
    assert.equal(ask(A, { lifetime: 0, internalPort: 1234 })?.result, PcpResult.SUCCESS);
    assert.equal(svc.stats().pinholes_deleted, 2);
    assert.equal(svc.pins().length, 0);
  });

  it("holds each host to ipv6.pcp_max_per_host (USER_EX_QUOTA) and all to ipv6.pcp_max_pinholes", () => {
    const { ask } = setup({ maxPerHost: 2, maxPinholes: 3 });
    assert.equal(ask(A, { internalPort: 1 })?.result, PcpResult.SUCCESS);
    assert.equal(ask(A, { internalPort: 2 })?.result, PcpResult.SUCCESS);
    const q = ask(A, { internalPort: 3 });
    assert.equal(q?.result, PcpResult.USER_EX_QUOTA);
    assert.equal(q?.lifetime, 30, "a short error lifetime");
    assert.equal(ask(A, { internalPort: 1 })?.result, PcpResult.SUCCESS, "a renewal is no new pinhole");
    assert.equal(ask(B, { internalPort: 1 })?.result, PcpResult.SUCCESS);
    assert.equal(ask(B, { internalPort: 2 })?.result, PcpResult.NO_RESOURCES);
  });

  it("refuses THIRD_PARTY unless ipv6.pcp_third_party; allowed, only for inside addresses (§13.1)", () => {
    const third = (addr: Uint8Array) => ({ options: [{ code: OPTION_THIRD_PARTY, data: addr }] });
    const off = setup();
    assert.equal(off.ask(A, third(B))?.result, PcpResult.NOT_AUTHORIZED);
    assert.equal(off.inbound(B, IPPROTO_TCP, 8080), DROP);
    const on = setup({ thirdParty: true });
    const r = on.ask(A, third(B));
    assert.equal(r?.result, PcpResult.SUCCESS);
    assert.deepEqual([...(r?.externalAddr6 ?? [])], [...B]);
    assert.equal(on.inbound(B, IPPROTO_TCP, 8080), FORWARD);
    assert.equal(on.inbound(A, IPPROTO_TCP, 8080), DROP);
    assert.match(on.svc.pins()[0].note, /THIRD_PARTY/);
    assert.equal(on.ask(A, third(STRANGER))?.result, PcpResult.NOT_AUTHORIZED);
  });

  it("answers what it cannot grant with the RFC's result codes", () => {
    const { svc, ask } = setup();
    // §8.3: the client's address field must be the source.
    assert.equal(ask(A, { clientAddr: B })?.result, PcpResult.ADDRESS_MISMATCH);
    // Only inside hosts.
    assert.equal(ask(STRANGER, {})?.result, PcpResult.NOT_AUTHORIZED);
    assert.equal(ask(A, { protocol: 132 })?.result, PcpResult.UNSUPP_PROTOCOL);
    assert.equal(ask(A, { internalPort: 0 })?.result, PcpResult.NOT_AUTHORIZED, "no all-ports pinhole");
    const filterOpt = new Uint8Array(20);
    filterOpt[1] = 128;
    filterOpt.set(parseIpv6(REMOTE) as Uint8Array, 4);
    assert.equal(
      ask(A, { options: [{ code: OPTION_FILTER, data: filterOpt }] })?.result,
      PcpResult.UNSUPP_OPTION,
    );
    assert.equal(
      ask(A, { options: [{ code: 99, data: new Uint8Array(0) }] })?.result,
      PcpResult.UNSUPP_OPTION,
    );
    // §13.2: a firewall cannot give another external port than the internal one.
    const prefer = { options: [{ code: OPTION_PREFER_FAILURE, data: new Uint8Array(0) }] };
    assert.equal(
      ask(A, { suggestedExternalPort: 9999, ...prefer })?.result,
      PcpResult.CANNOT_PROVIDE_EXTERNAL,
    );
    const granted = ask(A, { suggestedExternalPort: 9999 });
    assert.equal(granted?.result, PcpResult.SUCCESS, "without PREFER_FAILURE, the internal port is given");
    assert.equal(granted?.externalPort, 8080);
    assert.equal(ask(A, { opcode: OPCODE_PEER })?.result, PcpResult.UNSUPP_OPCODE);
    assert.equal(ask(A, { version: 1 })?.result, PcpResult.UNSUPP_VERSION);
    const announce = ask(A, { opcode: OPCODE_ANNOUNCE, lifetime: 0 });
    assert.equal(announce?.result, PcpResult.SUCCESS);
    // A response, or a datagram too short: not answered.
    assert.equal(svc.handle(Uint8Array.of(2, 0x81), A), undefined);
    assert.equal(svc.handle(Uint8Array.of(2), A), undefined);
    assert.equal(svc.stats().pcp_ignored, 2);
  });
});
