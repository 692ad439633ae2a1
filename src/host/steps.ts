// One step of masq's host setup: the argv that applies it and the argv that undoes it, plus the
// constructors the plans share (routes, rules, sysctls). Pure data; apply.ts runs them.

/** Placeholder in an undo argv for a value read just before the step is applied. */
export const PRIOR = "{prior}";

/** A value the step overwrites; apply.ts reads it first and substitutes it for PRIOR in `undo`. */
export type Prior =
  | { kind: "sysctl"; key: string }
  | { kind: "mtu"; dev: string }
  /** "up" or "down": undo leaves a device that was already up (and the routes through it) alone. */
  | { kind: "link-state"; dev: string };

export interface HostStep {
  /** Human description, used in logs and error messages. */
  what: string;
  apply: string[];
  /** May contain PRIOR (see `prior`); empty when nothing needs undoing. */
  undo: string[];
  prior?: Prior;
}

export function cmdStep(what: string, apply: string[], undo: string[]): HostStep {
  return { what, apply, undo };
}

/** `ip rule add <selector>`, undone by `ip rule del <selector>`. */
export function ruleStep(what: string, selector: string[]): HostStep {
  return cmdStep(what, ["ip", "rule", "add", ...selector], ["ip", "rule", "del", ...selector]);
}

/** `ip route add <spec>`, undone by `ip route del <spec>`. */
export function routeStep(what: string, spec: string[]): HostStep {
  return cmdStep(what, ["ip", "route", "add", ...spec], ["ip", "route", "del", ...spec]);
}

/** Sets a sysctl; undo restores the value it had (read at apply time). */
export function sysctlStep(key: string, value: string): HostStep {
  return {
    what: `sysctl ${key}=${value}`,
    apply: ["sysctl", "-q", "-w", `${key}=${value}`],
    undo: ["sysctl", "-q", "-w", `${key}=${PRIOR}`],
    prior: { kind: "sysctl", key },
  };
}

/** A sysctl name; uses '/' separators when a part (an interface like eth0.100) contains a dot. */
export function sysctlKey(...parts: string[]): string {
  return parts.some((p) => p.includes(".")) ? parts.join("/") : parts.join(".");
}

/** Return a copy of `argv` with PRIOR replaced by `value`. */
export function fillPrior(argv: readonly string[], value: string): string[] {
  return argv.map((a) => a.replaceAll(PRIOR, value));
}
