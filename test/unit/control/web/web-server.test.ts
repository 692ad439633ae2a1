// The web dashboard's server without root: who may read it (the token as a bearer, once in the
// address, then as the cookie), the headers every answer carries (CSP, nosniff, no caching of the
// API), the Server-Sent Events stream, the cap on clients, and that changes are refused unless
// allowed and then only with the CSRF token, going through masq forward's own code.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { forwardsApi } from "../../../../src/control/api-handlers.ts";
import { SESSION_COOKIE } from "../../../../src/control/web/auth.ts";
import { Sampler } from "../../../../src/control/web/sampler.ts";
import { CSP, WebServer } from "../../../../src/control/web/server.ts";
import { FORWARD, type NatEngine } from "../../../../src/nat/engine.ts";
import { ForwardRegistry } from "../../../../src/portmap/forwards.ts";
import { ip, udp } from "../../../helpers/packets.ts";
import { makeEngine, P } from "../../nat/engine-helpers.ts";
import { fakeStats } from "./fake-stats.ts";

const TOKEN = "s3cret-token-0123456789";

interface Started {
  web: WebServer;
  base: string;
  registry: ForwardRegistry;
  engine: NatEngine;
}

async function startWeb(
  dir: string,
  o: { token?: string; allowChanges?: boolean; maxClients?: number },
): Promise<Started> {
  const engine = makeEngine();
  const p = udp({ src: "192.168.0.2", dst: "203.0.113.10", sport: 40000, dport: 53, payload: 100 });
  assert.equal(engine.process(p, 0, p.length, 1000), FORWARD);
  const registry = new ForwardRegistry({
    engine,
    publicAddresses: [ip(P)],
    stateFile: join(dir, `forwards-${Math.random()}.json`),
  });
  const forwards = forwardsApi(registry, engine);
  const sampler = new Sampler({
    engine,
    stats: () => fakeStats(engine),
    forwards: () =>
      forwards.list() as ReturnType<NonNullable<ConstructorParameters<typeof Sampler>[0]["forwards"]>>,
    algNames: new Set(["ftp"]),
    allowChanges: o.allowChanges ?? false,
  });
  const web = await WebServer.start({
    host: "127.0.0.1",
    port: 0,
    ...(o.token !== undefined ? { token: o.token } : {}),
    allowChanges: o.allowChanges ?? false,
    sampler,
    forwards,
    tickMs: 50,
    ...(o.maxClients !== undefined ? { maxClients: o.maxClients } : {}),
  });
  return { web, base: `http://127.0.0.1:${web.address.port}`, registry, engine };
}

/** Reads an event stream until `pattern` has come (bounded), then drops the connection. */
async function readEvents(
  url: string,
  init: RequestInit,
  pattern: RegExp,
): Promise<{ res: Response; text: string }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  const res = await fetch(url, { ...init, signal: ac.signal });
  let text = "";
  try {
    const reader = res.body?.getReader();
    const dec = new TextDecoder();
    while (reader && !pattern.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return { res, text };
}

describe("web dashboard server", () => {
  let dir: string;
  let s: Started;
  const auth = { authorization: `Bearer ${TOKEN}` };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masqweb-unit-"));
    s = await startWeb(dir, { token: TOKEN });
  });

  after(async () => {
    await s?.web.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a request without the token: 401, a Bearer challenge, the error code", async () => {
    for (const path of ["/", "/api/snapshot", "/api/events", "/app.js"]) {
      const r = await fetch(`${s.base}${path}`);
      assert.equal(r.status, 401, path);
      assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.equal(r.headers.get("content-security-policy"), CSP);
      assert.equal(((await r.json()) as { code: string }).code, "MASQ_ERR_WEB_UNAUTHORIZED");
    }
    const wrong = await fetch(`${s.base}/`, { headers: { authorization: "Bearer s3cret-token-0123456780" } });
    assert.equal(wrong.status, 401);
    const wrongQuery = await fetch(`${s.base}/?token=nope`, { redirect: "manual" });
    assert.equal(wrongQuery.status, 401);
  });

  it("serves the page with the bearer token, under a strict CSP and nosniff", async () => {
    const r = await fetch(`${s.base}/`, { headers: auth });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/html/);
    const csp = r.headers.get("content-security-policy") ?? "";
    assert.match(csp, /(^|; )default-src 'self'(;|$)/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    const html = await r.text();
    assert.match(html, /<script src="\/app\.js"/);
    for (const path of ["/app.js", "/app.css", "/uPlot.iife.min.js", "/uPlot.min.css"]) {
      const a = await fetch(`${s.base}${path}`, { headers: auth });
      assert.equal(a.status, 200, path);
      assert.ok((await a.arrayBuffer()).byteLength > 100, path);
    }
  });

  it("takes ?token= once: a redirect without it that sets an HttpOnly SameSite=Strict cookie, which then serves", async () => {
    const r = await fetch(`${s.base}/?token=${TOKEN}&x=1`, { redirect: "manual" });
    assert.equal(r.status, 303);
    assert.equal(r.headers.get("location"), "/?x=1");
    const cookie = r.headers.get("set-cookie") ?? "";
    assert.match(cookie, new RegExp(`^${SESSION_COOKIE}=[0-9a-f]{64}; `));
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.ok(!cookie.includes(TOKEN), "the cookie holds a value derived from the token, not the token");
    const pair = cookie.split(";")[0];
    const page = await fetch(`${s.base}/`, { headers: { cookie: pair } });
    assert.equal(page.status, 200);
    const forged = await fetch(`${s.base}/`, { headers: { cookie: `${SESSION_COOKIE}=${"0".repeat(64)}` } });
    assert.equal(forged.status, 401);
  });

  it("API answers are never cached", async () => {
    for (const path of ["/api/snapshot", "/api/session"]) {
      const r = await fetch(`${s.base}${path}`, { headers: auth });
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get("cache-control"), "no-store", path);
      assert.equal(r.headers.get("content-security-policy"), CSP, path);
    }
  });

  it("streams Server-Sent Events: a hello with the history, then snapshots with the connection table", async () => {
    const { res, text } = await readEvents(
      `${s.base}/api/events`,
      { headers: auth },
      /event: snapshot\n(data: .*\n)+\n/,
    );
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.match(text, /^retry: \d+\n\n/);
    assert.match(text, /\nevent: hello\ndata: \{"history":/);
    const m = /event: snapshot\ndata: (.*)\n\n/.exec(text);
    assert.ok(m, text.slice(0, 300));
    const snap = JSON.parse(m[1]) as {
      flows: { inside: { addr: string }; protocol: string }[];
      total: number;
    };
    assert.equal(snap.total, 1);
    assert.equal(snap.flows[0].inside.addr, "192.168.0.2");
    assert.equal(snap.flows[0].protocol, "udp");
  });

  it("is read-only by default: a forward cannot be added or removed, and nothing changes", async () => {
    const add = await fetch(`${s.base}/api/forwards`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ outside: "8080/tcp", inside: "192.168.0.2:80" }),
    });
    assert.equal(add.status, 403);
    assert.equal(((await add.json()) as { code: string }).code, "MASQ_ERR_WEB_READ_ONLY");
    const del = await fetch(`${s.base}/api/forwards/1`, { method: "DELETE", headers: auth });
    assert.equal(del.status, 403);
    assert.equal(s.registry.views().length, 0);
  });
});

describe("web dashboard with allow_changes", () => {
  let dir: string;
  let s: Started;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "masqweb-unit-"));
    s = await startWeb(dir, { allowChanges: true, maxClients: 1 });
  });

  after(async () => {
    await s?.web.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const json = { "content-type": "application/json" };
  const body = JSON.stringify({ outside: "8080/tcp", inside: "192.168.0.2:80", note: "web" });

  it("needs the page's CSRF token and its own origin to change anything", async () => {
    const none = await fetch(`${s.base}/api/forwards`, { method: "POST", headers: json, body });
    assert.equal(none.status, 403);
    assert.equal(((await none.json()) as { code: string }).code, "MASQ_ERR_WEB_FORBIDDEN");
    const { csrf } = (await (await fetch(`${s.base}/api/session`)).json()) as { csrf: string };
    assert.match(csrf, /^[0-9a-f]{64}$/);
    const elsewhere = await fetch(`${s.base}/api/forwards`, {
      method: "POST",
      headers: { ...json, "x-masq-csrf": csrf, origin: "http://evil.example" },
      body,
    });
    assert.equal(elsewhere.status, 403);
    assert.equal(s.registry.views().length, 0);
  });

  it("adds and removes a forward through masq forward's code", async () => {
    const { csrf } = (await (await fetch(`${s.base}/api/session`)).json()) as { csrf: string };
    const add = await fetch(`${s.base}/api/forwards`, {
      method: "POST",
      headers: { ...json, "x-masq-csrf": csrf, origin: s.base },
      body,
    });
    assert.equal(add.status, 201, await add.clone().text());
    const f = (await add.json()) as { id: number; note: string };
    assert.equal(f.note, "web");
    assert.deepEqual(
      s.registry.views().map((v) => v.text),
      ["8080/tcp 192.168.0.2:80"],
    );
    const bad = await fetch(`${s.base}/api/forwards`, {
      method: "POST",
      headers: { ...json, "x-masq-csrf": csrf },
      body: JSON.stringify({ outside: "nonsense", inside: "192.168.0.2" }),
    });
    assert.equal(bad.status, 400);
    const del = await fetch(`${s.base}/api/forwards/${f.id}`, {
      method: "DELETE",
      headers: { "x-masq-csrf": csrf },
    });
    assert.equal(del.status, 200);
    assert.equal(s.registry.views().length, 0);
  });

  it("caps the live clients: one more is refused with 503 while the first is open", async () => {
    const ac = new AbortController();
    const first = await fetch(`${s.base}/api/events`, { signal: ac.signal });
    assert.equal(first.status, 200);
    try {
      const second = await fetch(`${s.base}/api/events`);
      assert.equal(second.status, 503);
      assert.equal(((await second.json()) as { code: string }).code, "MASQ_ERR_WEB_BUSY");
    } finally {
      ac.abort();
    }
  });
});

describe("the dashboard page", () => {
  const dir = new URL("../../../../src/control/web/static/", import.meta.url);
  const html = readFileSync(new URL("index.html", dir), "utf8");

  it("has no inline script, style or event handler a CSP would block", () => {
    for (const tag of html.match(/<script\b[^>]*>/g) ?? []) assert.match(tag, /\ssrc="\/[^"]+"/, tag);
    assert.doesNotMatch(html, /<script\b[^>]*>[^<]+<\/script>/);
    assert.doesNotMatch(html, /<style\b/);
    assert.doesNotMatch(html, /\sstyle=/);
    assert.doesNotMatch(html, /\son[a-z]+=/);
    assert.doesNotMatch(html, /https?:\/\//, "nothing from another origin");
  });
});
