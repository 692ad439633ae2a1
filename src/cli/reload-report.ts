// What `masq reload` prints: what the daemon applied (or, with --check, would apply).
import type { ReloadReport } from "../control/reload.ts";

export function formatReload(r: ReloadReport): string {
  const lines: string[] = [];
  if (r.result === "checked")
    lines.push(
      r.changed.length === 0
        ? "the config is valid; a reload would change nothing"
        : `the config is valid; a reload would change: ${r.changed.join(", ")}`,
    );
  else if (r.result === "unchanged") lines.push("reloaded: no change");
  else lines.push(`reloaded: ${r.changed.join(", ")}`);
  for (const f of r.forwards.added) lines.push(`  + forward ${f}`);
  for (const f of r.forwards.removed) lines.push(`  - forward ${f}`);
  return `${lines.join("\n")}\n`;
}
