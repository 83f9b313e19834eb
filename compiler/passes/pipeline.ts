/** The pass pipeline: the default order, and a runner that verifies the graph after every pass
 *  and records, per pass, the node count and the rewrites that fired. */
import { fail } from "../errors.ts";
import type { Graph } from "../ir/graph.ts";
import { verify } from "../ir/verify.ts";
import { cse } from "./cse.ts";
import { dce } from "./dce.ts";
import { foldConstants } from "./fold-constants.ts";
import { fuseAttention } from "./fuse-attention.ts";
import { fuseElementwise } from "./fuse-elementwise.ts";
import { fuseMatmulEpilogue } from "./fuse-matmul-epilogue.ts";
import { fuseQkv } from "./fuse-qkv.ts";
import { fuseResidualLayerNorm } from "./fuse-residual-layer-norm.ts";
import { fuseScaleSoftmax } from "./fuse-scale-softmax.ts";
import type { NotFused, Pass } from "./pass.ts";
import { recognizeLayerNorm } from "./recognize-layer-norm.ts";
import { simplify } from "./simplify.ts";

/** Every pass, in the default order. The trailing dce sweeps what the fusions left behind. */
export const DEFAULT_PIPELINE: readonly Pass[] = [
  dce,
  foldConstants,
  simplify,
  cse,
  recognizeLayerNorm,
  fuseQkv,
  fuseScaleSoftmax,
  fuseAttention,
  fuseMatmulEpilogue,
  fuseResidualLayerNorm,
  fuseElementwise,
  dce,
];

export const PASSES: ReadonlyMap<string, Pass> = new Map(DEFAULT_PIPELINE.map((p) => [p.name, p]));

export interface PassStats {
  readonly name: string;
  readonly nodesBefore: number;
  readonly nodes: number;
  readonly rewrites: number;
}

export interface PipelineResult {
  readonly graph: Graph;
  readonly stats: readonly PassStats[];
  readonly notFused: readonly NotFused[];
}

/** Looks passes up by name (`--passes a,b`); an unknown name is a usage error listing them all. */
export function passesByName(names: readonly string[]): Pass[] {
  return names.map(
    (n) =>
      PASSES.get(n) ??
      fail(
        "usage",
        "--passes",
        `unknown pass ${JSON.stringify(n)} (passes: ${[...PASSES.keys()].join(", ")})`,
      ),
  );
}

export function runPipeline(
  g: Graph,
  passes: readonly Pass[] = DEFAULT_PIPELINE,
  afterPass?: (name: string, g: Graph) => void,
): PipelineResult {
  const stats: PassStats[] = [];
  const notFused: NotFused[] = [];
  let graph = g;
  for (const p of passes) {
    const out = p.run(graph);
    verify(out.graph, p.name);
    stats.push({
      name: p.name,
      nodesBefore: graph.nodes.order,
      nodes: out.graph.nodes.order,
      rewrites: out.rewrites,
    });
    notFused.push(...out.notFused);
    graph = out.graph;
    afterPass?.(p.name, graph);
  }
  return { graph, stats, notFused };
}
