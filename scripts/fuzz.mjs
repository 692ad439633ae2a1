// A longer randomized run than `npm test` (which uses one fixed seed): runs every property test
// file again and again, each round with a fresh seed and more runs per property, until the time
// is up. Prints each round's seed, so a failure is replayed with FC_SEED=<seed> FC_RUNS_FACTOR=<k>.
//   npm run fuzz -- --seconds 120 [--factor 10]
import { spawnSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "120" }, factor: { type: "string", default: "10" } },
});
const seconds = Number(values.seconds);
const factor = Number(values.factor);
if (!(seconds > 0) || !(factor > 0)) {
  console.error("fuzz: --seconds and --factor must be positive numbers");
  process.exit(2);
}

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".test.ts") && readFileSync(p, "utf8").includes("assertProperty(")) out.push(p);
  }
  return out.sort();
}

const files = find("test/unit");
if (files.length === 0) {
  console.error("fuzz: no property test files found in test/unit");
  process.exit(1);
}
console.log(`fuzz: ${files.length} files with properties, ${factor}x the runs of npm test, for ${seconds} s`);
const deadline = Date.now() + seconds * 1000;
const failed = [];
let rounds = 0;
while (Date.now() < deadline) {
  const seed = randomInt(1, 2 ** 31);
  const started = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-reporter=dot", ...files], {
    env: { ...process.env, FC_SEED: String(seed), FC_RUNS_FACTOR: String(factor) },
    encoding: "utf8",
    timeout: Math.max(60_000, deadline - Date.now() + 60_000),
  });
  rounds++;
  const ok = r.status === 0;
  console.log(
    `round ${rounds}: seed ${seed} ${ok ? "ok" : "FAILED"} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  if (!ok) {
    failed.push(seed);
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
  }
}
console.log(
  `fuzz: ${rounds} rounds, ${failed.length} failed${failed.length ? `: seeds ${failed.join(", ")} (replay: FC_SEED=<seed> FC_RUNS_FACTOR=${factor} npm run test:unit)` : ""}`,
);
process.exit(failed.length ? 1 : 0);
