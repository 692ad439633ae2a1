// Copies the web dashboard's files next to its compiled server: the page, script and style of
// src/control/web/static, and uPlot's built files from the uplot package, so that dist/ (which
// the package ships) holds everything the page needs and nothing is fetched from a CDN.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const from = join(root, "src", "control", "web", "static");
const to = join(root, "dist", "control", "web", "static");
mkdirSync(to, { recursive: true });
for (const f of readdirSync(from)) copyFileSync(join(from, f), join(to, f));
const uplot = dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.iife.min.js"));
for (const f of ["uPlot.iife.min.js", "uPlot.min.css"]) copyFileSync(join(uplot, f), join(to, f));
