// The IGD control actions against a real engine and the lease table NAT-PMP and PCP share:
// results, every error code, the security rules (own address only, low ports, permission
// rules, the shared per-host cap) and IGD v1/v2 leases.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveRunConfig } from "../../../src/control/config.ts";
import { FORWARD } from "../../../src/nat/engine.ts";
import { defaultPortmapConfig } from "../../../src/portmap/config.ts";
import { PortmapLeases } from "../../../src/portmap/leases.ts";
import { PortmapService, silentLog } from "../../../src/portmap/service.ts";
import {
  type Caller,
  type ControlContext,
  type OutArgs,
  runAction,
} from "../../../src/portmap/upnp/actions.ts";
import { defaultUpnpConfig, parsePermission, type UpnpConfig } from "../../../src/portmap/upnp/config.ts";
import { UpnpFault } from "../../../src/portmap/upnp/errors.ts";
import { UpnpMappings } from "../../../src/portmap/upnp/mappings.ts";
import { ip, SYN, tcp } from "../../helpers/packets.ts";
import { makeEngine, P, REMOTE, run } from "../nat/engine-helpers.ts";

const A = ip("192.168.0.2");
const B = ip("192.168.0.3");
const WANIP = (v: number) => `urn:schemas-upnp-org:service:WANIPConnection:${v}`;
const CMN = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1";

function setup(over: Partial<UpnpConfig> = {}, portmapOver = {}, engineOver = {}) {
  const engine = makeEngine(engineOver);
  engine.tick(1000);
  const config = { ...defaultUpnpConfig(), enabled: true, ...over };
  const pm = { ...defaultPortmapConfig(), enabled: true, minLifetime: 1, ...portmapOver };
  const counts: string[] = [];
  const leases = new PortmapLeases(
    engine,
    pm,
    silentLog,
    (a) => (a & 0xffffff00) >>> 0 === ip("192.168.0.0"),
    (n, o) => counts.push(`${o}:${n}`),
  );
  const mappings = new UpnpMappings(leases, engine, config);
  const ctx: ControlContext = {
    version: config.version,
    mappings,
    externalAddress: (c) => engine.pairedAddress(c),
    uptimeSec: () => 42,
    wanCounters: () => ({ bytesSent: 2 ** 32 + 5, bytesReceived: 7, packetsSent: 3, packetsReceived: 4 }),
  };
  const call = (
    action: string,
    args: Record<string, string> = {},
    who: Caller = { addr: A, owner: `ip:${A}` },
    service = WANIP(config.version),
  ) =>
    Object.fromEntries(
      runAction(
        ctx,
        // The service at the control URL; the request names its own (which may differ).
        service === CMN ? CMN : WANIP(config.version),
        { serviceType: service, action, args: new Map(Object.entries(args)) },
        who,
      ) as OutArgs,
    );
  const fault = (
    action: string,
    args: Record<string, string> = {},
    who?: Caller,
    service?: string,
  ): number => {
    try {
      call(action, args, who, service);
    } catch (err) {
      if (err instanceof UpnpFault) return err.code;
      throw err;
    }
    assert.fail(`${action} succeeded`);
  };
  return { engine, leases, mappings, call, fault, counts, pm };
}

const add = (ext: number, int = 8080, client = "192.168.0.2", proto = "TCP", lease = "0", remote = "") => ({
  NewRemoteHost: remote,
  NewExternalPort: String(ext),
  NewProtocol: proto,
  NewInternalPort: String(int),
  NewInternalClient: client,
  NewEnabled: "1",
  NewPortMappingDescription: "game",
  NewLeaseDuration: lease,
});
const key = (ext: number, proto = "TCP") => ({
  NewRemoteHost: "",
  NewExternalPort: String(ext),
  NewProtocol: proto,
});

describe("UPnP IGD WANIPConnection:1", () => {
  it("reports the external address, status, connection type and NAT status", () => {
    const { call } = setup();
    assert.deepEqual(call("GetExternalIPAddress"), { NewExternalIPAddress: P });
    assert.deepEqual(call("GetStatusInfo"), {
      NewConnectionStatus: "Connected",
      NewLastConnectionError: "ERROR_NONE",
      NewUptime: 42,
    });
    assert.deepEqual(call("GetConnectionTypeInfo"), {
      NewConnectionType: "IP_Routed",
      NewPossibleConnectionTypes: "IP_Routed",
    });
    assert.deepEqual(call("GetNATRSIPStatus"), { NewRSIPAvailable: 0, NewNATEnabled: 1 });
  });

  it("maps the external port asked for as an engine pin of origin upnp that admits inbound connections", () => {
    const { call, engine } = setup();
    call("AddPortMapping", add(18080));
    const pin = engine.pinList().find((p) => p.outside.port === 18080);
    assert.ok(pin);
    assert.deepEqual(
      [pin.origin, pin.inside.addr, pin.inside.port, pin.note, pin.expiresInSec],
      ["upnp", "192.168.0.2", 8080, "game", null],
    );
    const syn = tcp({ src: REMOTE, dst: P, sport: 40000, dport: 18080, flags: SYN });
    assert.equal(run(engine, syn).verdict, FORWARD, "an inbound SYN reaches the inside host");
  });

  it("lists the mapping by external port and by index, and deletes it", () => {
    const { call, fault } = setup();
    call("AddPortMapping", add(18080));
    assert.deepEqual(call("GetSpecificPortMappingEntry", key(18080)), {
      NewInternalPort: 8080,
      NewInternalClient: "192.168.0.2",
      NewEnabled: 1,
      NewPortMappingDescription: "game",
      NewLeaseDuration: 0,
    });
    assert.equal(call("GetGenericPortMappingEntry", { NewPortMappingIndex: "0" }).NewExternalPort, 18080);
    assert.equal(fault("GetGenericPortMappingEntry", { NewPortMappingIndex: "1" }), 713);
    call("DeletePortMapping", key(18080));
    assert.equal(fault("GetSpecificPortMappingEntry", key(18080)), 714);
    assert.equal(fault("DeletePortMapping", key(18080)), 714);
  });

  it("v1: a lease of 0 lasts until deleted; another is bounded by max_lifetime", () => {
    const { call } = setup({ maxLifetimeSec: 3600 });
    call("AddPortMapping", add(18080, 8080, "192.168.0.2", "TCP", "0"));
    call("AddPortMapping", add(18081, 8081, "192.168.0.2", "UDP", "999999"));
    assert.equal(call("GetSpecificPortMappingEntry", key(18080)).NewLeaseDuration, 0);
    assert.equal(call("GetSpecificPortMappingEntry", key(18081, "UDP")).NewLeaseDuration, 3600);
  });

  it("renews a client's own mapping in place and moves it to another of its ports", () => {
    const { call, engine } = setup();
    call("AddPortMapping", add(18080));
    call("AddPortMapping", add(18080));
    assert.equal(engine.pinList().length, 1, "renewed, not doubled");
    call("AddPortMapping", add(18080, 9090));
    assert.deepEqual(
      engine.pinList().map((p) => p.inside.port),
      [9090],
    );
  });

  it("606: NewInternalClient must be the requester (a host maps only its own address)", () => {
    const { fault, engine } = setup();
    assert.equal(fault("AddPortMapping", add(18080, 8080, "192.168.0.3")), 606);
    assert.equal(engine.pinList().length, 0);
  });

  it("606: another host's mapping cannot be deleted", () => {
    const { call, fault } = setup();
    call("AddPortMapping", add(18080));
    assert.equal(fault("DeletePortMapping", key(18080), { addr: B, owner: `ip:${B}` }), 606);
  });

  it("606: ports below 1024 are refused unless allow_low_ports", () => {
    assert.equal(setup().fault("AddPortMapping", add(80)), 606);
    assert.equal(setup().fault("AddPortMapping", add(18080, 22)), 606);
    setup({ allowLowPorts: true }).call("AddPortMapping", add(80, 80));
  });

  it("606: the permission rules, first match wins", () => {
    const rules = ["allow 20000-29999 192.168.0.2 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"].map((r) => {
      const p = parsePermission(r);
      assert.ok(typeof p === "object", String(p));
      return p;
    });
    const { call, fault } = setup({ rules });
    call("AddPortMapping", add(20080));
    assert.equal(fault("AddPortMapping", add(18080)), 606);
    assert.equal(
      fault("AddPortMapping", add(20081, 8081, "192.168.0.3"), { addr: B, owner: `ip:${B}` }),
      606,
    );
    assert.match(String(parsePermission("allow 1-2")), /must be/);
    assert.match(String(parsePermission("allow 1-70000 0.0.0.0/0 1")), /not a port/);
  });

  it("718: an external port another host holds", () => {
    const { call, fault } = setup();
    call("AddPortMapping", add(18080));
    assert.equal(
      fault("AddPortMapping", add(18080, 8080, "192.168.0.3"), { addr: B, owner: `ip:${B}` }),
      718,
    );
  });

  it("718: a port the gateway cannot give (interface mode: outside masq's range, until the port steering lands)", () => {
    const { fault, call } = setup({}, {}, { mode: "interface" });
    const code = fault("AddPortMapping", add(18080));
    assert.equal(code, 718);
    call("AddPortMapping", add(61500));
  });

  it("729: a port a NAT-PMP/PCP client holds; the per-host cap is shared with them", () => {
    const { leases, fault, engine, call } = setup({}, { maxPerHost: 2 });
    const natpmp = new PortmapService({
      engine,
      config: { ...defaultPortmapConfig(), enabled: true, minLifetime: 1, maxPerHost: 2 },
      insideNetworks: engine.config.inside,
      leases,
    });
    const got = leases.map({
      origin: "natpmp",
      owner: `ip:${A}`,
      proto: "tcp",
      inAddr: A,
      inPort: 7000,
      suggestedPort: 17000,
      suggestedAddr: 0,
      lifetime: 600,
      nonce: "",
      remoteAddr: 0,
      preferFailure: false,
    });
    assert.ok(got.ok);
    assert.equal(fault("AddPortMapping", add(got.grant.outPort, 8080, "192.168.0.2")), 729);
    call("AddPortMapping", add(18080));
    // Two mappings (one NAT-PMP, one UPnP) is A's share of max_per_host = 2.
    assert.equal(fault("AddPortMapping", add(18081, 8081)), 728);
    assert.equal(natpmp.stats().mappings_active, 1, "NAT-PMP/PCP counts its own mappings only");
  });

  it("716 for a wildcard external port, 402 for missing or ill-typed arguments", () => {
    const { fault } = setup();
    assert.equal(fault("AddPortMapping", add(0)), 716);
    assert.equal(fault("AddPortMapping", add(18080, 0)), 402);
    const bad: Array<Record<string, string>> = [
      { ...add(18080), NewExternalPort: "70000" },
      { ...add(18080), NewExternalPort: "-1" },
      { ...add(18080), NewExternalPort: "abc" },
      { ...add(18080), NewProtocol: "ICMP" },
      { ...add(18080), NewInternalClient: "192.168.0.256" },
      { ...add(18080), NewInternalClient: "" },
      { ...add(18080), NewRemoteHost: "example.com" },
      { ...add(18080), NewEnabled: "maybe" },
      { ...add(18080), NewEnabled: "0" },
      { ...add(18080), NewLeaseDuration: "4294967296" },
    ];
    for (const args of bad) assert.equal(fault("AddPortMapping", args), 402, JSON.stringify(args));
    const { NewProtocol: _, ...noProto } = add(18080);
    assert.equal(fault("AddPortMapping", noProto), 402);
    assert.equal(fault("GetGenericPortMappingEntry", {}), 402);
  });

  it("401 for unknown actions, v2 actions on v1, and another service's requests", () => {
    const { fault } = setup();
    assert.equal(fault("FormatHardDisk"), 401);
    assert.equal(fault("AddAnyPortMapping", add(18080)), 401);
    assert.equal(fault("GetListOfPortMappings"), 401);
    assert.equal(fault("GetExternalIPAddress", {}, undefined, WANIP(2)), 401, "a v1 service is not v2");
    assert.equal(fault("GetTotalBytesSent", {}, undefined, WANIP(1)), 401);
  });

  it("a remote host narrows the mapping to that remote", () => {
    const { call, engine } = setup();
    call("AddPortMapping", add(18080, 8080, "192.168.0.2", "TCP", "0", "203.0.113.99"));
    assert.equal(call("GetSpecificPortMappingEntry", key(18080)).NewInternalPort, 8080);
    const syn = tcp({ src: REMOTE, dst: P, sport: 40000, dport: 18080, flags: SYN });
    assert.notEqual(run(engine, syn).verdict, FORWARD, "another remote is not admitted");
  });

  it("counts its mappings in UPnP's counters and removes them all at the end", () => {
    const { call, counts, mappings, engine } = setup();
    call("AddPortMapping", add(18080));
    call("AddPortMapping", add(18081, 8081, "192.168.0.2", "UDP"));
    assert.deepEqual(counts, ["upnp:mappings_created", "upnp:mappings_created"]);
    mappings.clear();
    assert.equal(engine.pinList().length, 0);
  });
});

describe("UPnP IGD v2 actions", () => {
  const other: Caller = { addr: B, owner: `ip:${B}` };
  it("AddAnyPortMapping: the port asked for when free, another when not", () => {
    const { call } = setup({ version: 2 });
    assert.deepEqual(call("AddAnyPortMapping", add(18080)), { NewReservedPort: 18080 });
    const got = call("AddAnyPortMapping", add(18080, 8080, "192.168.0.3"), other).NewReservedPort;
    assert.ok(typeof got === "number" && got !== 18080 && got >= 1024, `got ${got}`);
  });

  it("v2: a lease of 0 is the longest (604800 s), 732 for a wildcard internal port", () => {
    const { call, fault } = setup({ version: 2 });
    call("AddPortMapping", add(18080, 8080, "192.168.0.2", "TCP", "0"));
    assert.equal(call("GetSpecificPortMappingEntry", key(18080)).NewLeaseDuration, 604_800);
    assert.equal(fault("AddPortMapping", add(18081, 0)), 732);
  });

  it("GetListOfPortMappings lists the caller's mappings in the range; 730 when none, 733 when inverted", () => {
    const { call, fault } = setup({ version: 2 });
    call("AddPortMapping", add(18080));
    call("AddPortMapping", add(18090, 8090));
    const list = (first: number, last: number, manage = "0", n = "0") =>
      call("GetListOfPortMappings", {
        NewStartPort: String(first),
        NewEndPort: String(last),
        NewProtocol: "TCP",
        NewManage: manage,
        NewNumberOfPorts: n,
      });
    const doc = (list(1024, 65535).NewPortListing as unknown as { cdata: string }).cdata;
    assert.match(
      doc,
      /^<\?xml version="1\.0" encoding="UTF-8"\?><p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection"/,
    );
    assert.equal(doc.match(/<p:PortMappingEntry>/g)?.length, 2);
    assert.match(
      doc,
      /<p:NewExternalPort>18080<\/p:NewExternalPort><p:NewProtocol>TCP<\/p:NewProtocol><p:NewInternalPort>8080/,
    );
    assert.equal(
      (list(1024, 65535, "0", "1").NewPortListing as unknown as { cdata: string }).cdata.match(
        /<p:PortMappingEntry>/g,
      )?.length,
      1,
    );
    assert.equal(
      fault("GetListOfPortMappings", {
        NewStartPort: "20000",
        NewEndPort: "30000",
        NewProtocol: "TCP",
        NewManage: "0",
        NewNumberOfPorts: "0",
      }),
      730,
    );
    assert.equal(
      fault("GetListOfPortMappings", {
        NewStartPort: "30000",
        NewEndPort: "20000",
        NewProtocol: "TCP",
        NewManage: "0",
        NewNumberOfPorts: "0",
      }),
      733,
    );
  });

  it("DeletePortMappingRange deletes the caller's own in the range; 730 when none, 733 when inverted", () => {
    const { call, fault, engine } = setup({ version: 2 });
    call("AddPortMapping", add(18080));
    call("AddPortMapping", add(18090, 8090));
    call("AddPortMapping", add(18085, 8080, "192.168.0.3"), other);
    const range = (a: number, b: number) => ({
      NewStartPort: String(a),
      NewEndPort: String(b),
      NewProtocol: "TCP",
      NewManage: "1",
    });
    call("DeletePortMappingRange", range(18000, 18089));
    assert.deepEqual(
      engine
        .pinList()
        .map((p) => p.outside.port)
        .sort(),
      [18085, 18090],
    );
    assert.equal(fault("DeletePortMappingRange", range(18000, 18089)), 730);
    assert.equal(fault("DeletePortMappingRange", range(18100, 18000)), 733);
  });
});

describe("UPnP IGD WANCommonInterfaceConfig:1", () => {
  it("reports the link and masq's translated traffic as ui4 counters", () => {
    const { call } = setup();
    const c = (action: string) => call(action, {}, undefined, CMN);
    assert.deepEqual(c("GetCommonLinkProperties"), {
      NewWANAccessType: "Ethernet",
      NewLayer1UpstreamMaxBitRate: 0,
      NewLayer1DownstreamMaxBitRate: 0,
      NewPhysicalLinkStatus: "Up",
    });
    assert.deepEqual(c("GetTotalBytesSent"), { NewTotalBytesSent: 5 }, "wraps at 2^32");
    assert.deepEqual(c("GetTotalBytesReceived"), { NewTotalBytesReceived: 7 });
    assert.deepEqual(c("GetTotalPacketsSent"), { NewTotalPacketsSent: 3 });
    assert.deepEqual(c("GetTotalPacketsReceived"), { NewTotalPacketsReceived: 4 });
  });
});

describe("[upnp] configuration", () => {
  const read = (toml: string) =>
    resolveRunConfig({ inside: ["lan0"], outside: "wan0", config: "m.toml" }, () => toml);
  it("is off by default, on with --upnp, v1 unless asked for v2", () => {
    const c = resolveRunConfig({ inside: ["lan0"], outside: "wan0" });
    assert.equal(c.upnp.enabled, false);
    assert.equal(c.upnp.version, 1);
    assert.equal(resolveRunConfig({ inside: ["lan0"], outside: "wan0", upnp: true }).upnp.enabled, true);
    const u = read(
      '[upnp]\nenabled = true\nversion = 2\nhttp_port = 5000\nrules = ["allow 1024-65535 192.168.0.0/24 1024-65535"]\n',
    ).upnp;
    assert.deepEqual([u.enabled, u.version, u.httpPort, u.rules.length], [true, 2, 5000, 1]);
  });

  it("names the key of a bad value", () => {
    assert.throws(() => read("[upnp]\nversion = 3\n"), /m\.toml: upnp\.version: must be 1 or 2/);
    assert.throws(
      () => read("[upnp]\nmax_lifetime = 700000\n"),
      /upnp\.max_lifetime: must be at most 604800/,
    );
    assert.throws(
      () => read('[upnp]\nrules = ["allow 1-2"]\n'),
      /m\.toml: upnp\.rules\.0: must be "allow\|deny/,
    );
    assert.throws(() => read("[upnp]\nbogus = 1\n"), /upnp\.bogus: unknown key/);
  });
});
