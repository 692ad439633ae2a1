// masq's version: package.json's, two levels up from src/control and dist/control alike.
import { readFileSync } from "node:fs";

export function masqVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}
