// The error of a wrong configuration: its own module because every section of the config, the
// checks across keys and the modules that read a configuration (cpu-placement, host-resolution …)
// throw it, and none of them should import config.ts for it.
import { MasqError } from "../errors/masq-error.ts";

/**
 * A configuration problem: the key or flag it concerns ("m.toml: limits.max_flows", "--ports")
 * and what is wrong with it, as fields (the message is the two joined).
 */
export class ConfigError extends MasqError {
  constructor(
    readonly key: string,
    readonly problem: string,
  ) {
    super("MASQ_ERR_CONFIG_INVALID", `${key}: ${problem}`);
    this.name = "ConfigError";
  }
}
