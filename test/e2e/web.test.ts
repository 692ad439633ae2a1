// End to end: the live web dashboard in a real browser. masq runs in the lab's gateway with the
// dashboard on the gateway's inside address (a token required there); Debian's chromium runs
// headless inside the gateway's namespace, driven by puppeteer-core over a pipe (the browser is
// started through `ip netns exec`, so it reaches the inside address; a pipe needs no port).
// The page must load with no console error (a CSP violation is one), show A-box's download
// while it runs, show a new flow of B-box within 2 s, add and remove a forward from its form
// (allow_changes, through the CSRF check), and a request without the token from an inside host
// must be refused (the read-only default is refused in the unit tests). A screenshot is left in a temporary directory, whose path is printed.
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { labScript, type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type LabProcess, type MasqNetwork } from "../../src/lab/netns.ts";

const CHROMIUM = "/usr/bin/chromium";
const root = process.getuid?.() === 0;
const skip = !root ? "needs root (network namespaces)" : !existsSync(CHROMIUM) ? "needs chromium" : false;
const TOKEN = "masqweb-e2e-token-4f9c2a7d1e";
const PORT = 8080;

/** Page code: whether a row of the connection table has cells `c` (their text) such that `cond`. */
function connsRow(cond: string): string {
  return `[...document.querySelectorAll("#conns tbody tr")].some((tr) => { const c = [...tr.cells].map((x) => x.textContent); return ${cond}; })`;
}

describe("web dashboard in chromium", { skip }, () => {
  let net: MasqNetwork;
  let masq: MasqProcess;
  let tmp: string;
  let outDir: string;
  let browser: Browser | undefined;
  let page: Page;
  let download: LabProcess | undefined;
  let url: string;
  const consoleErrors: string[] = [];

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "masqweb-e2e-"));
    outDir = mkdtempSync(join(tmpdir(), "masqweb-e2e-out-"));
    net = await buildMasqNetwork({ prefix: "masqweb", mode: "interface" });
    const inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
    // A web server on A-box, for a forward made from the page.
    const abox = net.lab.spawn(net.inside[0].ns, [
      ...labScript("inet-service"),
      "--http",
      "80",
      "--udp",
      "7",
    ]);
    await inet.waitFor(/"proto":"udp"/, 10_000);
    await abox.waitFor(/"proto":"udp"/, 10_000);
    const tokenFile = join(tmp, "web.token");
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    url = `http://${net.gate.lanAddr}:${PORT}`;
    const config = join(tmp, "masq.toml");
    writeFileSync(
      config,
      [
        `state_dir = "${join(tmp, "state")}"`,
        // A small table: each snapshot scans the whole of it, and the machine is shared.
        "[limits]",
        "max_flows = 4096",
        "max_flows_per_host = 4096",
        "[web]",
        `listen = "${net.gate.lanAddr}:${PORT}"`,
        `token_file = "${tokenFile}"`,
        "allow_changes = true",
        "",
      ].join("\n"),
    );
    masq = await startMasq(net, { config });
    await masq.proc.waitFor(/web dashboard served/, 10_000);
  });

  after(async () => {
    try {
      await browser?.close().catch(() => undefined);
      await download?.kill();
      if (masq?.proc.running) await masq.stop();
    } finally {
      await net?.destroy();
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("refuses an inside host's request without the token on the inside address (401)", async () => {
    const curl = (...extra: string[]) =>
      net.lab.exec(net.inside[1].ns, [
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        ...extra,
      ]);
    for (const path of ["/", "/api/snapshot", "/api/events"]) {
      const r = await curl(`${url}${path}`);
      assert.equal(r.stdout, "401", `${path}: ${r.stderr}`);
    }
    const wrong = await curl("-H", "Authorization: Bearer not-the-token-at-all", `${url}/api/snapshot`);
    assert.equal(wrong.stdout, "401");
    const right = await curl("-H", `Authorization: Bearer ${TOKEN}`, `${url}/api/snapshot`);
    assert.equal(right.stdout, "200");
  });

  it("loads in chromium with no console error and shows A-box's download while it runs", async () => {
    // A-box downloads a big file slowly, so its connection is there while the page looks.
    download = net.lab.spawn(net.inside[0].ns, [
      "curl",
      "-sS",
      "--limit-rate",
      "300k",
      "-o",
      "/dev/null",
      `http://${net.inet.addr}/bytes/100000000`,
    ]);
    const wrapper = join(tmp, "chromium-in-gate.sh");
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${net.gate.ns} ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await puppeteer.launch({
      executablePath: wrapper,
      pipe: true,
      headless: true,
      userDataDir: join(tmp, "chromium-profile"),
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1400,1200",
      ],
      defaultViewport: { width: 1400, height: 1200 },
      timeout: 30_000,
    });
    page = await browser.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (err) => consoleErrors.push(`page error: ${String(err)}`));
    page.on("requestfailed", (r) => {
      // The event stream is cut when the page goes away; anything else failing is a fault.
      if (!r.url().endsWith("/api/events")) consoleErrors.push(`request failed: ${r.url()}`);
    });
    // A CSP violation is reported in the console; this says which directive as well.
    await page.evaluateOnNewDocument(
      'document.addEventListener("securitypolicyviolation", (e) => console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI));',
    );
    const res = await page.goto(`${url}/?token=${TOKEN}`, { waitUntil: "load", timeout: 20_000 });
    assert.equal(res?.status(), 200);
    assert.equal(new URL(page.url()).search, "", "the token is not left in the address");
    const remote = `${net.inet.addr}:80`;
    await page.waitForFunction(
      connsRow(`c[1].startsWith("192.168.0.2:") && c[3] === "${remote}" && c[4] === "established"`),
      { timeout: 15_000 },
    );
    // The throughput chart draws A-box once a tick has seen its bytes move.
    await page.waitForFunction(
      'document.querySelector("#chart-throughput .u-legend")?.textContent.includes("192.168.0.2") === true',
      { timeout: 15_000 },
    );
    assert.equal(await page.$eval("#live", (e) => e.textContent), "live");
    assert.equal(await page.$eval("#public", (e) => e.textContent), net.publicAddr);
    assert.deepEqual(consoleErrors, []);
  });

  it("shows a new flow within 2 s of its start", async () => {
    const seqBefore = Number(await page.$eval("body", (b) => b.getAttribute("data-seq")));
    const r = await net.lab.exec(net.inside[1].ns, [
      "curl",
      "-sS",
      "--max-time",
      "5",
      `http://${net.inet.addr}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const seen = Date.now();
    await page.waitForFunction(connsRow('c[1].startsWith("192.168.0.3:")'), { timeout: 2000, polling: 50 });
    const seqAfter = Number(await page.$eval("body", (b) => b.getAttribute("data-seq")));
    assert.ok(seqAfter > seqBefore, `snapshots ${seqBefore} → ${seqAfter}`);
    process.stdout.write(`# B-box's new flow was on the page ${Date.now() - seen} ms after its curl ended\n`);
    assert.deepEqual(consoleErrors, []);
  });

  it("adds a forward from the page (allow_changes), which the Internet host then reaches, and removes it", async () => {
    await page.type('#forward-add input[name="outside"]', "9090/tcp");
    await page.type('#forward-add input[name="inside"]', `${net.inside[0].addr}:80`);
    await page.type('#forward-add input[name="note"]', "from the page");
    await page.click('#forward-add button[type="submit"]');
    await page.waitForFunction('document.getElementById("forward-result").textContent.includes("added")', {
      timeout: 10_000,
    });
    const list = JSON.parse(await masq.cli(["forward", "list", "--json"])) as {
      forwards: { id: number; text: string; note: string; source: string }[];
    };
    assert.deepEqual(
      list.forwards.map((f) => [f.text, f.note, f.source]),
      [[`9090/tcp ${net.inside[0].addr}:80`, "from the page", "runtime"]],
    );
    const r = await net.lab.exec(net.inet.ns, [
      "curl",
      "-sS",
      "--max-time",
      "5",
      `http://${net.publicAddr}:9090/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /you came from 203\.0\.113\.10:/);
    await page.waitForFunction(
      '[...document.querySelectorAll("#forwards tbody tr")].some((tr) => tr.cells[6]?.textContent === "from the page")',
      { timeout: 5000 },
    );
    await page.click("#forwards tbody tr button");
    await page.waitForFunction('document.getElementById("forward-result").textContent.includes("removed")', {
      timeout: 10_000,
    });
    const after = JSON.parse(await masq.cli(["forward", "list", "--json"])) as { forwards: unknown[] };
    assert.deepEqual(after.forwards, []);
    assert.deepEqual(consoleErrors, []);
  });

  it("writes a screenshot under the test's output directory", async () => {
    const file = join(outDir, "dashboard.png");
    await page.screenshot({ path: file, fullPage: true });
    assert.ok(statSync(file).size > 10_000);
    process.stdout.write(`# screenshot: ${file}\n`);
    assert.deepEqual(consoleErrors, []);
  });
});
