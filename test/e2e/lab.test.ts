// End to end: `masq lab --keep`, ended as a person ends it (Ctrl-C: SIGINT to the whole process
// group, masq included), leaves nothing behind: no namespace, no process, and no file in masq's
// state dir (its control socket and host state file).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import { DEFAULT_STATE_DIR } from "../../src/host/apply.ts";
import { MASQ_BIN } from "../../src/lab/masq-process.ts";
import { listNamespaces } from "../../src/lab/netns.ts";

const root = process.getuid?.() === 0;

describe("masq lab", { skip: root ? false : "needs root (network namespaces)" }, () => {
  it("--keep, then Ctrl-C: everything worked, and no namespace, process or state file is left", async () => {
    const p = spawn(process.execPath, [MASQ_BIN, "lab", "--keep"], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    p.stdout.on("data", (d) => {
      out += String(d);
    });
    p.stderr.on("data", (d) => {
      out += String(d);
    });
    const exited = new Promise<number | null>((resolve) => p.on("exit", (code) => resolve(code)));
    const prefix = `masqlab-${p.pid}-`;
    try {
      const deadline = Date.now() + 120_000;
      while (!out.includes("Press Ctrl-C") && Date.now() < deadline && p.exitCode === null)
        await new Promise((r) => setTimeout(r, 200));
      assert.match(out, /Press Ctrl-C to tear it down/, out);
      assert.match(out, /Everything worked through masq|masq-gate/, out);
      const files = () => {
        try {
          return readdirSync(DEFAULT_STATE_DIR).filter((f) => f.includes(prefix));
        } catch {
          return [];
        }
      };
      assert.ok(files().length > 0, "while it runs, masq has its socket and state file");
      process.kill(-(p.pid as number), "SIGINT");
      const code = await Promise.race([
        exited,
        new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 60_000)),
      ]);
      assert.equal(code, 0, out);
      assert.match(out, /no namespace, process, route or file of the lab is left/, out);
      assert.deepEqual(files(), []);
      assert.deepEqual(await listNamespaces(prefix), []);
    } finally {
      if (p.exitCode === null) process.kill(-(p.pid as number), "SIGKILL");
    }
  });
});
