// Is the process a host state file names still the masq that wrote it? A pid alone is not
// enough: right after `kill -9` the dead masq is a zombie until its parent reaps it (kill(pid, 0)
// still succeeds), and later the pid may belong to any other program.
import { readFileSync } from "node:fs";
import { basename } from "node:path";

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or null. */
export function processStartTime(pid: number): string | null {
  return statFields(pid)?.[19] ?? null; // fields[0] is field 3
}

/**
 * Whether `pid` is a running masq: it exists and is not a zombie, it is the same process that
 * was recorded (same start time, when one was recorded), and its command line runs masq
 * (`masq …`, `node …/bin/masq.js …`).
 */
export function isLiveMasq(pid: number, pidStart: string | null): boolean {
  const fields = statFields(pid);
  if (!fields) return false;
  // State: Z (zombie) and X (dead) have exited; their command line is empty too.
  if (fields[0] === "Z" || fields[0] === "X") return false;
  if (pidStart !== null && fields[19] !== pidStart) return false;
  return isMasqCommandLine(readCommandLine(pid));
}

/**
 * Whether an argv runs masq: `masq …` or `node masq …` (the installed command), or the script
 * `masq.js` among the first words (`node [flags] …/bin/masq.js …`).
 */
export function isMasqCommandLine(argv: readonly string[]): boolean {
  const name = (i: number) => (argv[i] === undefined ? "" : basename(argv[i]));
  return name(0) === "masq" || name(1) === "masq" || argv.slice(0, 4).some((a) => basename(a) === "masq.js");
}

function readCommandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter((a) => a !== "");
  } catch {
    return [];
  }
}

/** The fields of /proc/<pid>/stat from field 3 (the state) on, or undefined when it is gone. */
function statFields(pid: number): string[] | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}
