// The description and control server (UDA 1.1 §2, §3) on one inside address: GET the
// descriptions, POST a SOAP action to a control URL. Only hosts on an inside network are served
// (the server is bound to the inside address; masq's guard rule already steers anything from the
// WAN with an inside address into its TUN, where it is dropped); bodies are bounded, slow clients
// cut off. There is no eventing: SUBSCRIBE is refused, so no callback URL is ever contacted
// (CallStranger, CVE-2020-12695).

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { parseIpv4 } from "../../packet/addr.ts";
import { type Caller, type ControlContext, runAction } from "./actions.ts";
import { rootDescription, scpd } from "./description.ts";
import { serviceAt, type UpnpDevice, WAN_COMMON_IFC, WAN_IP_CONNECTION } from "./device.ts";
import { UpnpError, UpnpFault } from "./errors.ts";
import { MAX_SOAP_BYTES, parseSoapRequest, soapFault, soapResponse } from "./soap.ts";

export const ROOT_DESC_PATH = "/rootDesc.xml";

/**
 * Readies an external port before a mapping of it is decided (interface mode: a port beyond
 * masq's range needs rules of its own before the lease table can grant it); resolves with the
 * function to call once the request is decided.
 */
export type PreparePort = (proto: "tcp" | "udp", port: number) => Promise<() => void>;

const MAPPING_ACTIONS = new Set(["AddPortMapping", "AddAnyPortMapping"]);

/** The port an add asks for, when it names one well enough to prepare it (else the action refuses it). */
function askedPort(args: Map<string, string>): { proto: "tcp" | "udp"; port: number } | undefined {
  const port = Number(args.get("NewExternalPort")?.trim());
  const proto = args.get("NewProtocol")?.trim().toUpperCase();
  if (!Number.isInteger(port) || port < 1 || port > 65535 || (proto !== "TCP" && proto !== "UDP"))
    return undefined;
  return { proto: proto === "TCP" ? "tcp" : "udp", port };
}
const XML = 'text/xml; charset="utf-8"';
const SERVER_HEADER = "Linux UPnP/1.1 masq/0.1";

export interface HttpContext {
  root: UpnpDevice;
  configId: number;
  control: ControlContext;
  isInside(addr: number): boolean;
  /** The caller's identity for the per-host cap; undefined: refused (not a host masq sees). */
  identify(addr: number): Promise<string | undefined>;
  count(name: string): void;
  /** See UpnpServerOptions.preparePort. */
  preparePort?: PreparePort;
  log: {
    info(o: object, m: string): void;
    debug(o: object, m: string): void;
    warn(o: object, m: string): void;
  };
}

function send(res: ServerResponse, status: number, body: string, type = XML): void {
  res.writeHead(status, {
    "Content-Type": type,
    "Content-Length": Buffer.byteLength(body),
    Server: SERVER_HEADER,
  });
  res.end(body);
}

/** Reads at most MAX_SOAP_BYTES of the body; undefined when it is longer. */
function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > MAX_SOAP_BYTES) return resolve(undefined);
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (b: Buffer) => {
      size += b.length;
      if (size > MAX_SOAP_BYTES) {
        req.removeAllListeners("data");
        req.pause();
        resolve(undefined);
      } else parts.push(b);
    });
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", () => resolve(undefined));
  });
}

async function control(
  ctx: HttpContext,
  req: IncomingMessage,
  res: ServerResponse,
  caller: number,
): Promise<void> {
  const service = serviceAt(ctx.root, (req.url ?? "").split("?")[0]);
  if (!service) return send(res, 404, "");
  const body = await readBody(req);
  if (body === undefined) {
    ctx.count("soap_oversized");
    res.setHeader("Connection", "close");
    return send(res, 413, "");
  }
  const parsed = parseSoapRequest(body);
  if (typeof parsed === "string") {
    ctx.count(`soap_${parsed.replace("-", "_")}`);
    return send(res, 400, "");
  }
  const fault = (code: number, detail: string) => {
    ctx.count(`soap_error_${code}`);
    ctx.log.debug({ action: parsed.action, code, detail }, "UPnP action refused");
    send(res, 500, soapFault(code));
  };
  const owner = await ctx.identify(caller);
  if (owner === undefined)
    return fault(UpnpError.ACTION_NOT_AUTHORIZED, "not a host masq sees on the inside");
  const who: Caller = { addr: caller, owner };
  const ask = ctx.preparePort && MAPPING_ACTIONS.has(parsed.action) ? askedPort(parsed.args) : undefined;
  const settle = ask && ctx.preparePort ? await ctx.preparePort(ask.proto, ask.port) : undefined;
  try {
    const out = runAction(ctx.control, service.type, parsed, who);
    ctx.count("soap_ok");
    send(res, 200, soapResponse(parsed.serviceType, parsed.action, out));
  } catch (err) {
    if (err instanceof UpnpFault) return fault(err.code, err.detail);
    ctx.log.warn({ err, action: parsed.action }, "UPnP action failed");
    fault(UpnpError.ACTION_FAILED, "internal error");
  } finally {
    settle?.();
  }
}

/** The document a GET asks for, if there is one. */
function description(ctx: HttpContext, path: string): string | undefined {
  const v = ctx.control.version;
  if (path === ROOT_DESC_PATH) return rootDescription(ctx.root, ctx.configId);
  if (path === "/WANIPCn.xml") return scpd(WAN_IP_CONNECTION, v);
  if (path === "/WANCfg.xml") return scpd(WAN_COMMON_IFC, v);
  return undefined;
}

function route(ctx: HttpContext, req: IncomingMessage, res: ServerResponse): void {
  const addr = parseIpv4(req.socket.remoteAddress ?? "");
  if (addr === undefined || !ctx.isInside(addr)) {
    ctx.count("http_not_inside");
    req.socket.destroy();
    return;
  }
  ctx.count("http_requests");
  if (req.method === "GET") {
    const doc = description(ctx, (req.url ?? "").split("?")[0]);
    send(res, doc === undefined ? 404 : 200, doc ?? "");
  } else if (req.method === "POST") {
    control(ctx, req, res, addr).catch((err: unknown) => {
      ctx.log.warn({ err }, "UPnP control request failed");
      if (!res.headersSent) send(res, 500, soapFault(UpnpError.ACTION_FAILED));
    });
  } else if (req.method === "SUBSCRIBE" || req.method === "UNSUBSCRIBE") {
    // No eventing: nothing ever calls a subscriber's CALLBACK back (CVE-2020-12695).
    ctx.count("subscribe_refused");
    send(res, 501, "");
  } else send(res, 405, "");
}

/** The description and control server for one inside address (not yet listening). */
export function createUpnpHttpServer(ctx: HttpContext): Server {
  const server = createServer(
    { maxHeaderSize: 8192, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 },
    (req, res) => route(ctx, req, res),
  );
  server.maxConnections = 64;
  server.maxRequestsPerSocket = 100;
  server.on("clientError", (_err, socket) => {
    ctx.count("http_malformed");
    socket.destroy();
  });
  return server;
}
