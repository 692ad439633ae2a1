// IPv4 addresses, prefixes and port ranges as the config file and the flags write them: parsed
// and checked, each error naming the key or flag (`where`).
import { ConfigError } from "./config-error.ts";

/** "61000-65534" or "61000" → range; errors name `where`. */
export function parsePorts(text: string, where: string): { first: number; last: number } {
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(text);
  if (!m) throw new ConfigError(where, `${JSON.stringify(text)} is not a port range like 61000-65534`);
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  if (first < 1 || last > 65535 || first > last)
    throw new ConfigError(where, `${text}: ports must be 1-65535 with the first not above the last`);
  if (last - first + 1 < 64)
    throw new ConfigError(where, `${text}: at least 64 ports are needed for a usable NAT`);
  return { first, last };
}

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function validDotted(a: string): boolean {
  const m = DOTTED.exec(a);
  return m?.slice(1).every((o) => Number(o) <= 255) === true;
}

/** An IPv4 address or prefix ("198.51.100.96/29") for the pool. */
export function checkAddress(text: string, where: string): string {
  const s = text.trim();
  const [addr, len] = s.split("/");
  if (
    !validDotted(addr) ||
    (len !== undefined && !(/^\d{1,2}$/.test(len) && Number(len) >= 24 && Number(len) <= 32))
  )
    throw new ConfigError(where, `${JSON.stringify(text)} is not an IPv4 address or a /24../32 prefix`);
  return s;
}

/** An IPv4 prefix (or a bare address, /32) as numbers; errors name `where`. */
export function prefixNumbers(text: string, where: string): { addr: number; len: number } {
  const [addr, len] = checkPrefix(text, where).split("/");
  return { addr: addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0), len: Number(len) };
}

/** An IPv4 prefix "a.b.c.d/len" (a bare address means /32). */
export function checkPrefix(text: string, where: string): string {
  const s = text.trim();
  const [addr, len] = s.split("/");
  if (!validDotted(addr) || (len !== undefined && !(/^\d{1,2}$/.test(len) && Number(len) <= 32)))
    throw new ConfigError(where, `${JSON.stringify(text)} is not an IPv4 prefix like 192.168.0.0/24`);
  return len === undefined ? `${addr}/32` : s;
}
