// Finds the test files and runs them with node:test (Node 20's --test takes no globs, and an empty
// list would silently pass, so an empty selection is an error).
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

// Anything else is refused: a mistyped or unknown argument (`--help`) must not run everything.
const SUITES = { unit: ["test/unit"], e2e: ["test/e2e"], all: ["test/unit", "test/e2e"] };
const args = process.argv.slice(2);
const which = args[0] ?? "all";
if (args.length > 1 || !Object.hasOwn(SUITES, which)) {
  console.error("usage: node scripts/run-tests.mjs [unit|e2e|all]");
  process.exit(2);
}
const dirs = SUITES[which];

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const files = dirs.flatMap((d) => find(d)).sort();
if (files.length === 0) {
  console.error(`run-tests: no test files found in ${dirs.join(", ")}`);
  process.exit(1);
}
if (dirs.includes("test/e2e") && process.getuid?.() !== 0) {
  console.error("run-tests: end-to-end tests need root (network namespaces); run as root");
  process.exit(1);
}
// End-to-end files each build their own namespaces; running them one at a time keeps the 2-core
// machine from timing them out.
const testArgs = ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files];
const r = spawnSync(process.execPath, testArgs, { stdio: "inherit" });
process.exit(r.status ?? 1);
