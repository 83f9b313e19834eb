/** fuse-residual-layer-norm — layer_norm(add(a, b), γ, β) ⇒ layer_norm_map(γ, β, a, b)
 *  {eps, expr="add($0, $1)"}
 *
 *  Rule: a layer norm whose input is elementwise work (an add, any elementwise op, a map, or a
 *  tree of them) reads that work's inputs and computes it on the fly: the residual add of a
 *  post-LN block when no matmul epilogue took it. The work absorbed is the least set of elementwise
 *  nodes feeding the norm's input all of whose uses are inside the fusion (a value used twice
 *  within it is recomputed, not stored); rank-0 consts become numbers. An existing layer_norm_map
 *  takes in the elementwise work feeding its inputs the same way.
 *
 *  Refused (NotFused, at the norm): the input, or a value inside the work, has a second user or
 *  is a graph output — it must be materialized anyway (the pre-LN residual stream of GPT-2 is read
 *  by the norm and by the next residual add). Runs after fuse-matmul-epilogue. */
import { nodeData, topoOrder } from "../ir/graph.ts";
import { fuseIntoConsumer } from "./expr-fusion.ts";
import type { NotFused, Pass } from "./pass.ts";
import { asGraph, draft, freeze } from "./rewrite.ts";

const NAME = "fuse-residual-layer-norm";

export const fuseResidualLayerNorm: Pass = {
  name: NAME,
  run: (g) => {
    const d = draft(g);
    const notFused: NotFused[] = [];
    let rewrites = 0;
    for (const k of topoOrder(g)) {
      const op = nodeData(asGraph(d), k).op;
      if (
        (op === "layer_norm" || op === "layer_norm_map") &&
        fuseIntoConsumer(d, k, NAME, notFused)
      )
        rewrites++;
    }
    return { graph: freeze(d), rewrites, notFused };
  },
};
