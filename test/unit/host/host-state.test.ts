// Host state files: where they live, what happens to a corrupt one, and whether the process a
// record names is still the masq that wrote it.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  cleanLeftovers,
  defaultStateFile,
  readState,
  removeOrphanStateFiles,
  StateFileError,
} from "../../../src/host/apply.ts";
import { isLiveMasq, isMasqCommandLine, processStartTime } from "../../../src/host/owner.ts";

/** Waits (bounded: 5 s) until `check` holds. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`never: ${what}`);
}

const argv0 = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0];
  } catch {
    return "";
  }
};
const state = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return "";
  }
};

describe("host state files and namespaces", () => {
  const tmp = mkdtempSync(join(tmpdir(), "masq-state-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("names the state file after the namespace's name and inode, so a reused inode is not mistaken", () => {
    const f = defaultStateFile("masq0", { dir: tmp, netns: "gw-a" });
    assert.match(f, /masq0\.gw-a-(\d+|unknown)\.json$/);
    assert.notEqual(f, defaultStateFile("masq0", { dir: tmp, netns: "gw-b" }));
  });

  it("removes the state files of named namespaces that are gone, keeps the others", () => {
    const state = join(tmp, "state");
    const netns = join(tmp, "netns");
    mkdirSync(state);
    mkdirSync(netns);
    writeFileSync(join(netns, "alive"), "");
    for (const f of [
      "masq0.alive-4026532.json",
      "masq0.dead-4026532.json",
      "masq0.netns-4026531.json",
      "notes.txt",
    ])
      writeFileSync(join(state, f), "{}");
    assert.deepEqual(removeOrphanStateFiles(state, netns), ["masq0.dead-4026532.json"]);
    assert.deepEqual(readdirSync(state).sort(), [
      "masq0.alive-4026532.json",
      "masq0.netns-4026531.json",
      "notes.txt",
    ]);
  });
});

describe("a corrupt host state file", () => {
  const tmp = mkdtempSync(join(tmpdir(), "masq-corrupt-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("is refused by readState with a StateFileError (not JSON, or not a record)", () => {
    for (const [name, text] of [
      ["truncated", '{"version": 1, "pid": 12'],
      ["other", '{"version": 7, "pid": 1, "steps": []}'],
      ["null", "null"],
      ["bad-step", '{"version": 1, "pid": 1, "steps": [{"undo": "rm -rf /"}]}'],
    ]) {
      const f = join(tmp, `${name}.json`);
      writeFileSync(f, text);
      assert.throws(() => readState(f), StateFileError, name);
    }
  });

  it("does not block: it is kept aside as <file>.corrupt-<time>, said in the log, and the cleanup goes on", async () => {
    const f = join(tmp, "masq0.netns-1.json");
    writeFileSync(f, "{ not json");
    const warnings: Array<{ obj: object; msg?: string }> = [];
    const log = { info() {}, warn: (obj: object, msg?: string) => warnings.push({ obj, msg }) };
    assert.equal(await cleanLeftovers(f, { log }), undefined, "nothing recorded to undo");
    assert.equal(existsSync(f), false);
    const aside = readdirSync(tmp).filter((n) => n.startsWith("masq0.netns-1.json.corrupt-"));
    assert.equal(aside.length, 1);
    assert.equal(readFileSync(join(tmp, aside[0]), "utf8"), "{ not json");
    assert.match(warnings[0].msg ?? "", /corrupt: kept aside/);
    assert.equal((warnings[0].obj as { keptAs: string }).keptAs, join(tmp, aside[0]));
  });
});

describe("is the recorded process a live masq?", () => {
  it("recognises masq's command lines", () => {
    assert.ok(isMasqCommandLine(["node", "/opt/masq/bin/masq.js", "run", "--inside", "eth1"]));
    assert.ok(isMasqCommandLine(["/usr/bin/node", "/usr/bin/masq", "run"]));
    assert.ok(isMasqCommandLine(["masq", "run"]));
    assert.ok(!isMasqCommandLine(["sleep", "30"]));
    assert.ok(!isMasqCommandLine(["node", "/srv/app/server.js", "masq"]), "masq only as a late argument");
    assert.ok(!isMasqCommandLine([]));
  });

  it("a running masq is; this test process, a gone pid and another start time are not", async () => {
    const p = spawn("bash", ["-c", "exec -a masq sleep 30"], { stdio: "ignore" });
    try {
      await until(() => argv0(p.pid!) === "masq", "the child runs as masq");
      const start = processStartTime(p.pid!);
      assert.ok(start);
      assert.equal(isLiveMasq(p.pid!, start), true);
      assert.equal(isLiveMasq(p.pid!, null), true);
      assert.equal(isLiveMasq(p.pid!, String(Number(start) + 1)), false, "the pid was reused");
    } finally {
      p.kill("SIGKILL");
    }
    assert.equal(isLiveMasq(process.pid, processStartTime(process.pid)), false, "not masq");
    assert.equal(isLiveMasq(0x3fffffff, null), false);
  });

  it("a masq killed with -9 that its parent has not reaped yet (a zombie) is not", async () => {
    // The subshell runs as "masq" and exits; its parent has exec'd sleep, which never reaps it.
    const p = spawn("bash", ["-c", "(exec -a masq sleep 0.2) & echo $!; exec sleep 30"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    try {
      const pid = await new Promise<number>((resolve) =>
        p.stdout.once("data", (d) => resolve(Number(String(d)))),
      );
      await until(() => state(pid) === "Z", "the masq child is a zombie");
      assert.doesNotThrow(() => process.kill(pid, 0), "a zombie still answers kill(pid, 0)");
      assert.equal(isLiveMasq(pid, processStartTime(pid)), false);
    } finally {
      p.kill("SIGKILL");
    }
  });
});
