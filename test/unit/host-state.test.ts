import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { defaultStateFile, removeOrphanStateFiles } from "../../src/host/apply.ts";

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
