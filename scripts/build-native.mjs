// Builds the TUN addon with npm's own bundled node-gyp against the headers of the Node that runs
// this script, so a fresh machine needs no machine-level npm setting (see docs/design.md).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const root = join(dirname(new URL(import.meta.url).pathname), "..");
if (!existsSync(join(root, "binding.gyp"))) process.exit(0);

const nodeDir = dirname(dirname(process.execPath));
const candidates = [
  process.env.npm_config_node_gyp,
  join(nodeDir, "lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
];
try {
  const require = createRequire(import.meta.url);
  candidates.push(require.resolve("node-gyp/bin/node-gyp.js"));
} catch {}
const gyp = candidates.find((p) => p && existsSync(p));
if (!gyp) {
  console.error("build-native: node-gyp not found (looked in npm's bundled copy)");
  process.exit(1);
}
// configure + build rather than rebuild: rebuild deletes build/ first, and a masq starting in
// that window (tests running while someone rebuilds) cannot load its addon.
for (const step of ["configure", "build"]) {
  const args = [gyp, step, `--nodedir=${nodeDir}`, ...(step === "build" ? ["--jobs=2"] : [])];
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
