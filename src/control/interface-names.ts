// Interface names of the configuration: what a name may be, and the outside TUN's name (given,
// or derived from the inside TUN's).
import * as v from "valibot";
import { ConfigError } from "./config-error.ts";

export const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;
/** An interface name in the config file's schema. */
export const ifname = v.pipe(
  v.string(),
  v.regex(IFNAME, "must be an interface name (1-15 letters, digits, _.:-)"),
);

/** The outside TUN's default name: the inside TUN's with this suffix. */
export const OUTSIDE_TUN_SUFFIX = "-out";
const MAX_IFNAME = 15;

/** `<tun>-out`, or undefined when that is longer than an interface name may be. */
export function outsideTunName(tun: string): string | undefined {
  const name = `${tun}${OUTSIDE_TUN_SUFFIX}`;
  return name.length <= MAX_IFNAME ? name : undefined;
}

/** The outside TUN's name: the one given (validated), else derived from the inside TUN's. */
export function resolveOutsideTun(tun: string, given?: { name: string; where: string }): string {
  if (given) {
    if (!IFNAME.test(given.name))
      throw new ConfigError(given.where, `${JSON.stringify(given.name)} is not an interface name`);
    if (given.name === tun) throw new ConfigError(given.where, `must differ from the inside TUN ${tun}`);
    return given.name;
  }
  const derived = outsideTunName(tun);
  if (derived === undefined)
    throw new ConfigError(
      "tun",
      `${JSON.stringify(tun)} is too long to name the outside TUN after it ` +
        `(${tun}${OUTSIDE_TUN_SUFFIX} has ${tun.length + OUTSIDE_TUN_SUFFIX.length} characters, ` +
        `at most ${MAX_IFNAME}): use a shorter tun or set tun_outside (--tun-outside)`,
    );
  return derived;
}
