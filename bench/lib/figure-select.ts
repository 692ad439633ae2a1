// `--figures`: which of the bench's figures a run measures (all by default), so a change to one
// path can be measured before and after, alternating, without the whole 15-minute run.

/** The figures by name, in the order a round measures them. */
export const FIGURE_NAMES = [
  "tcp1",
  "tcp4",
  "udp",
  "flows",
  "latency",
  "http500",
  "http50",
  "short",
] as const;
export type FigureName = (typeof FIGURE_NAMES)[number];

/** Other names for a figure: the latency figure measures UDP request/response and ping together. */
const ALIASES: Readonly<Record<string, FigureName>> = { ping: "latency", rtt: "latency" };

/**
 * The figures a comma-separated list names (undefined or empty: all of them); an unknown name is
 * an error that lists the known ones.
 */
export function parseFigures(text: string | undefined): ReadonlySet<FigureName> {
  if (text === undefined || text.trim() === "") return new Set(FIGURE_NAMES);
  const out = new Set<FigureName>();
  for (const raw of text.split(",")) {
    const name = raw.trim().toLowerCase();
    if (name === "") continue;
    const figure = ALIASES[name] ?? FIGURE_NAMES.find((f) => f === name);
    if (figure === undefined)
      throw new Error(
        `--figures: unknown figure ${JSON.stringify(raw.trim())} (known: ${[...FIGURE_NAMES, ...Object.keys(ALIASES)].join(", ")})`,
      );
    out.add(figure);
  }
  if (out.size === 0) throw new Error("--figures: names no figure");
  return out;
}
