// The `[[forward]]` tables of the config file (src/portmap/forwards.ts): their schema and the
// forwards they make, apart from config.ts so that file stays the list of sections.
import * as v from "valibot";
import { ForwardError, type ForwardSpec, parseForward } from "../portmap/forwards.ts";
import { ConfigError } from "./config-error.ts";

const forwardSchema = v.strictObject({
  outside: v.string('must be "[address:]port[-port]/proto", e.g. "8080/tcp"'),
  inside: v.string('must be "host[:port]", e.g. "192.168.0.2:80"'),
  remote: v.optional(v.string()),
  note: v.optional(v.string()),
});

export const forwardSectionSchema = v.array(forwardSchema, "must be an array of tables ([[forward]])");

export type ForwardSection = v.InferOutput<typeof forwardSectionSchema>;

/** The forwards of parsed `[[forward]]` tables; errors name their key in file `src`. */
export function forwardSpecs(f: ForwardSection, src: string): ForwardSpec[] {
  return f.map((t, i) => {
    try {
      return parseForward(t, `forward.${i}`);
    } catch (err) {
      if (err instanceof ForwardError && err.key !== undefined)
        throw new ConfigError(`${src}: ${err.key}`, err.problem);
      throw err;
    }
  });
}
