// The OS setup `masq run` does around its TUN devices: checks, plan, apply/undo, leftovers.
export * from "./apply.ts";
export * from "./checks.ts";
export { CommandError, type ExecOptions, type ExecResult, exec, formatArgv, inNetns, run } from "./exec.ts";
export * from "./leftovers.ts";
export * from "./local-ports.ts";
export * from "./plan.ts";
