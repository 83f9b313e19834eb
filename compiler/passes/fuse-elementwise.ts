/** fuse-elementwise — connected elementwise work ⇒ one `map {expr}`, or into its neighbour.
 *
 *  Rule, repeated until nothing changes:
 *   1. epilogues: elementwise work below a matmul joins it (fuse-matmul-epilogue's rule);
 *   2. from the last node up, each elementwise op or map, matmul_epilogue and layer_norm_map takes
 *      in the elementwise work feeding its expression: the least set of elementwise ops and maps
 *      all of whose uses are inside the fusion (so a value read twice within one expression is
 *      recomputed, not stored). An elementwise node becomes a map (also when alone: one kernel
 *      each); into a matmul_epilogue's extras or a layer_norm_map's inputs the work goes as a
 *      prologue. Rank-0 consts become numbers in the expression; `$i` are the distinct values
 *      read, in order of first appearance.
 *
 *    add(mul(gather(e, ids), c), sinusoidal(p))  ⇒ map(%emb, %pe) {expr="add(mul($0, c), $1)"}
 *
 *  Fusion stops at a value with a use outside it (or a graph output): that value must be
 *  materialized, and each such stop is a NotFused at the node it did not merge into. Epilogue
 *  refusals are fuse-matmul-epilogue's to report. Runs after fuse-residual-layer-norm, last of the
 *  fusions. */
import { nodeData, topoOrder, type NodeData } from "../ir/graph.ts";
import { fuseIntoConsumer, isFusible } from "./expr-fusion.ts";
import { fuseEpilogues } from "./fuse-matmul-epilogue.ts";
import type { NotFused, Pass } from "./pass.ts";
import { asGraph, draft, freeze, type Draft } from "./rewrite.ts";

const NAME = "fuse-elementwise";

const takesPrologue = (n: NodeData): boolean =>
  isFusible(n) || n.op === "matmul_epilogue" || n.op === "layer_norm_map";

/** One sweep of both steps; the number of rewrites. */
function sweep(d: Draft, out: NotFused[]): number {
  let n = fuseEpilogues(d, NAME, undefined);
  for (const k of topoOrder(asGraph(d)).reverse())
    if (d.nodes.hasNode(k) && takesPrologue(nodeData(asGraph(d), k)))
      if (fuseIntoConsumer(d, k, NAME, out)) n++;
  return n;
}

export const fuseElementwise: Pass = {
  name: NAME,
  run: (g) => {
    const d = draft(g);
    let rewrites = 0;
    // Each sweep but the last removes nodes (or turns an op into a map once), so this ends; the
    // refusals reported are those of the last sweep, which changed nothing.
    for (let sweeps = 0; ; sweeps++) {
      if (sweeps > 2 * g.nodes.order + 2) throw new Error(`${NAME} did not settle on @${g.name}`);
      const out: NotFused[] = [];
      const n = sweep(d, out);
      rewrites += n;
      if (n === 0) return { graph: freeze(d), rewrites, notFused: out };
    }
  },
};
