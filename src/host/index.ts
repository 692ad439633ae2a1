// The OS setup `masq run` does around its TUN device: checks, plan, apply/undo.
export * from "./apply.ts";
export * from "./checks.ts";
export { CommandError, type ExecOptions, type ExecResult, exec, formatArgv, inNetns, run } from "./exec.ts";
export * from "./plan.ts";
