/** dce — dead-code elimination.
 *  Rule: a node that is not a graph output, not an input, and not (transitively) an operand of an
 *  output is removed. Inputs stay even when unused: they are the graph's signature. */
import type { Pass } from "./pass.ts";
import { draft, freeze, removeDead } from "./rewrite.ts";

export const dce: Pass = {
  name: "dce",
  run: (g) => {
    const d = draft(g);
    const rewrites = removeDead(d);
    return { graph: freeze(d), rewrites, notFused: [] };
  },
};
