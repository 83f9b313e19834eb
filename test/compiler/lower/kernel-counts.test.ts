/** Kernel counts, asserted exactly (as tinygrad does), so that a fusion regression, or a copy
 *  creeping back into the KV cache path, fails CI; an improvement updates the numbers here.
 *  A block's count is the difference between two builds that differ by one layer. And the
 *  default pipeline never materializes attention scores: no buffer has two sequence axes. */
import { describe, expect, it } from "vitest";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { dimSymbols, formatShape, type Dim } from "../../../compiler/ir/shape.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { kernelsOf, PHASES, type Phase, type Program } from "../../../compiler/lower/program.ts";
import type { Pass } from "../../../compiler/passes/pass.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { gpt2Graph, seq2seqGraph } from "./models.ts";

type Counts = { readonly [P in Phase]: number };

const program = (g: Graph, passes?: readonly Pass[]): Program =>
  lower(runPipeline(g, passes).graph);

const counts = (p: Program): Counts =>
  Object.fromEntries(PHASES.map((ph) => [ph, kernelsOf(p, ph).length])) as Counts;

/** Kernels per phase that one more layer adds. */
const perLayer = (one: Graph, two: Graph, passes?: readonly Pass[]): Counts => {
  const [a, b] = [counts(program(one, passes)), counts(program(two, passes))];
  return Object.fromEntries(PHASES.map((ph) => [ph, b[ph] - a[ph]])) as Counts;
};

describe("kernels per layer", () => {
  it("GPT-2 block, default pipeline: 2 layer norms, 4 matmuls, 1 attention = 7 step kernels", () => {
    expect(perLayer(gpt2Graph(1), gpt2Graph(2))).toEqual({ load: 0, source: 0, step: 7 });
    const p = program(gpt2Graph(1));
    expect(p.kvCache.enabled).toBe(true);
    const step = kernelsOf(p, "step");
    // Embedding and head: gather, range, gather, add; final layer norm, logits.
    expect(step.map((k) => k.body.kind)).toEqual([
      "gather",
      "range",
      "gather",
      "expr",
      "layer_norm",
      "matmul",
      "attention_cached",
      "matmul",
      "layer_norm",
      "matmul",
      "matmul",
      "layer_norm",
      "matmul",
    ]);
  });

  it("GPT-2 block, no passes", () => {
    expect(perLayer(gpt2Graph(1), gpt2Graph(2), [])).toEqual({ load: 1, source: 0, step: 19 });
  });

  it("seq2seq decoder layer, default pipeline: 11 step kernels", () => {
    // The second layer's cross-attention K/V projection of the memory joins the first's
    // (fuse-qkv): its weights are concatenated once at load, and no source kernel is added.
    expect(perLayer(seq2seqGraph(1, 1), seq2seqGraph(1, 2))).toEqual({
      load: 2,
      source: 0,
      step: 11,
    });
  });

  it("seq2seq decoder layer, no passes", () => {
    expect(perLayer(seq2seqGraph(1, 1), seq2seqGraph(1, 2), [])).toEqual({
      load: 2,
      source: 4,
      step: 30,
    });
  });

  it("seq2seq encoder layer: source kernels only", () => {
    expect(perLayer(seq2seqGraph(1, 1), seq2seqGraph(2, 1))).toEqual({
      load: 0,
      source: 7,
      step: 0,
    });
    expect(perLayer(seq2seqGraph(1, 1), seq2seqGraph(2, 1), [])).toEqual({
      load: 1,
      source: 18,
      step: 0,
    });
  });
});

describe("whole programs (2 layers)", () => {
  it.each([
    ["gpt2, default pipeline", () => program(gpt2Graph()), { load: 0, source: 0, step: 20 }],
    ["gpt2, no passes", () => program(gpt2Graph(), []), { load: 2, source: 0, step: 44 }],
    ["seq2seq, default pipeline", () => program(seq2seqGraph()), { load: 2, source: 20, step: 28 }],
    ["seq2seq, no passes", () => program(seq2seqGraph(), []), { load: 8, source: 50, step: 68 }],
  ] as const)("%s", (_name, make, want) => {
    expect(counts(make())).toEqual(want);
  });
});

/** Buffers with two or more sequence axes (T, S, the cached length). */
function scoreLike(p: Program): string[] {
  const seq = new Set(["T", "S", ...(p.kvCache.enabled ? [p.kvCache.past] : [])]);
  const seqAxes = (shape: readonly Dim[]) =>
    shape.filter((d) => dimSymbols(d).some((s) => seq.has(s))).length;
  return p.buffers
    .filter((b) => seqAxes(b.shape) > 1)
    .map((b) => `%${b.node} ${formatShape(b.shape)}`);
}

describe.each([
  ["gpt2", gpt2Graph],
  ["seq2seq", seq2seqGraph],
])("%s", (_name, make) => {
  it("default pipeline: no buffer has two sequence axes ([H,T,T], [T,T], [T,S], …)", () => {
    expect(scoreLike(program(make()))).toEqual([]);
  });

  it("(while the unfused graph has such scores)", () => {
    expect(scoreLike(program(make(), [])).some((b) => b.endsWith(" [3,T,T]"))).toBe(true);
  });
});
