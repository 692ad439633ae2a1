// The dashboard's files, read into memory at start: the page, its script and style (static/ here,
// copied beside the compiled server by scripts/build-web.mjs) and uPlot's built files (copied
// there from the uplot package at build time; from node_modules when running from the sources).
// Nothing is fetched from elsewhere: the page works without the Internet, and the CSP forbids
// any other origin anyway.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface Asset {
  type: string;
  body: Buffer;
}

const here = dirname(fileURLToPath(import.meta.url));
const STATIC = join(here, "static");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/** The page's own files, and uPlot's, by the path the page asks for them at. */
export const ASSET_FILES: Readonly<Record<string, string>> = {
  "/": "index.html",
  "/app.js": "app.js",
  "/app.css": "app.css",
  "/uPlot.iife.min.js": "uPlot.iife.min.js",
  "/uPlot.min.css": "uPlot.min.css",
};

/** Every asset by path; throws naming a file that is missing (a broken build). */
export function loadAssets(dir = STATIC): Map<string, Asset> {
  const out = new Map<string, Asset>();
  for (const [path, file] of Object.entries(ASSET_FILES)) {
    const type = TYPES[file.slice(file.lastIndexOf("."))];
    out.set(path, { type, body: readFileSync(locate(dir, file)) });
  }
  return out;
}

function locate(dir: string, file: string): string {
  const p = join(dir, file);
  if (existsSync(p) || !file.startsWith("uPlot")) return p;
  return createRequire(import.meta.url).resolve(`uplot/dist/${file}`);
}
