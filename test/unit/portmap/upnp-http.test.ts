// The description and control server over real HTTP on loopback: documents, SOAP answers and
// faults, the refusals of bodies that are no control request, no eventing, inside sources only,
// and the port-preparing hook around an add.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { defaultPortmapConfig } from "../../../src/portmap/config.ts";
import { PortmapLeases } from "../../../src/portmap/leases.ts";
import { silentLog } from "../../../src/portmap/service.ts";
import { defaultUpnpConfig } from "../../../src/portmap/upnp/config.ts";
import { igdTree } from "../../../src/portmap/upnp/device.ts";
import { createUpnpHttpServer, type HttpContext } from "../../../src/portmap/upnp/http.ts";
import { UpnpMappings } from "../../../src/portmap/upnp/mappings.ts";
import { MAX_SOAP_BYTES } from "../../../src/portmap/upnp/soap.ts";
import { ip } from "../../helpers/packets.ts";
import { makeEngine } from "../nat/engine-helpers.ts";

const WANIP1 = "urn:schemas-upnp-org:service:WANIPConnection:1";

function envelope(action: string, inner: string): string {
  return `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:${action} xmlns:u="${WANIP1}">${inner}</u:${action}></s:Body></s:Envelope>`;
}

describe("UPnP description and control server (HTTP)", () => {
  const counts = new Map<string, number>();
  const prepared: string[] = [];
  let inside = true;
  let base = "";
  const engine = makeEngine({ inside: [{ addr: ip("127.0.0.0"), len: 8 }] });
  engine.tick(1000);
  const config = { ...defaultUpnpConfig(), enabled: true };
  const leases = new PortmapLeases(
    engine,
    { ...defaultPortmapConfig(), enabled: true },
    silentLog,
    () => true,
    () => {},
  );
  const ctx: HttpContext = {
    root: igdTree(1, "t"),
    configId: 1,
    control: {
      version: 1,
      mappings: new UpnpMappings(leases, engine, config),
      externalAddress: (c) => engine.pairedAddress(c),
      uptimeSec: () => 1,
      wanCounters: () => ({ bytesSent: 0, bytesReceived: 0, packetsSent: 0, packetsReceived: 0 }),
    },
    isInside: () => inside,
    identify: async (a) => `ip:${a}`,
    count: (n) => counts.set(n, (counts.get(n) ?? 0) + 1),
    preparePort: async (proto, port) => {
      prepared.push(`prepare ${proto}/${port}`);
      return () => prepared.push(`settle ${proto}/${port}`);
    },
    log: silentLog,
  };
  const server = createUpnpHttpServer(ctx);
  before(async () => {
    await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const post = (body: string) =>
    fetch(`${base}/ctl/IPConn`, {
      method: "POST",
      headers: { "Content-Type": 'text/xml; charset="utf-8"', SOAPAction: `"${WANIP1}#X"` },
      body,
    });

  it("serves the root description and the SCPDs", async () => {
    const r = await fetch(`${base}/rootDesc.xml`);
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.match(text, /<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1<\/deviceType>/);
    assert.match(text, /<controlURL>\/ctl\/IPConn<\/controlURL>/);
    const scpd = await (await fetch(`${base}/WANIPCn.xml`)).text();
    assert.match(scpd, /<name>AddPortMapping<\/name>/);
    assert.doesNotMatch(scpd, /AddAnyPortMapping/, "v1 lists no v2 action");
    assert.equal((await fetch(`${base}/nothing.xml`)).status, 404);
  });

  it("answers an action, and a fault with its code for a refused one", async () => {
    const ok = await post(envelope("GetExternalIPAddress", ""));
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /<NewExternalIPAddress>198\.51\.100\.2<\/NewExternalIPAddress>/);
    const bad = await post(envelope("NoSuchAction", ""));
    assert.equal(bad.status, 500);
    assert.match(await bad.text(), /<errorCode>401<\/errorCode>/);
  });

  it("readies the port an add names, and settles it once decided", async () => {
    const r = await post(
      envelope(
        "AddPortMapping",
        "<NewRemoteHost></NewRemoteHost><NewExternalPort>18080</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>8080</NewInternalPort><NewInternalClient>127.0.0.1</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>x</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>",
      ),
    );
    assert.equal(r.status, 200, await r.text());
    assert.deepEqual(prepared, ["prepare tcp/18080", "settle tcp/18080"]);
    assert.equal(engine.pinList()[0]?.inside.addr, "127.0.0.1");
  });

  it("refuses malformed XML, DTDs and oversized bodies before any action", async () => {
    assert.equal((await post("<not xml")).status, 400);
    assert.equal(
      (await post(`<!DOCTYPE x [<!ENTITY a "b">]>${envelope("GetExternalIPAddress", "")}`)).status,
      400,
    );
    assert.equal((await post("x".repeat(MAX_SOAP_BYTES + 1))).status, 413);
    assert.equal(counts.get("soap_malformed"), 1);
    assert.equal(counts.get("soap_doctype"), 1);
    assert.equal(counts.get("soap_oversized"), 1);
  });

  it("offers no eventing: SUBSCRIBE is refused and no callback is contacted", async () => {
    const r = await fetch(`${base}/evt/IPConn`, {
      method: "SUBSCRIBE",
      headers: { CALLBACK: "<http://203.0.113.10/x>", NT: "upnp:event" },
    });
    assert.equal(r.status, 501);
  });

  it("serves no host off the inside networks", async () => {
    inside = false;
    await assert.rejects(fetch(`${base}/rootDesc.xml`));
    inside = true;
    assert.ok((counts.get("http_not_inside") ?? 0) >= 1);
  });
});
