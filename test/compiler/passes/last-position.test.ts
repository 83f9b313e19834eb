/** last-position: every output over T keeps only its last position, the row-wise work before it
 *  narrows in place, and anything else is read through a slice {start=-1, size=1}. Checked as IR
 *  text in → IR text out, against the reference interpreter on the models (unfused and after the
 *  default pipeline) and on random graphs: each new output is the old one's last position. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nodeData, type Graph } from "../../../compiler/ir/graph.ts";
import { interpret } from "../../../compiler/ir/interpret.ts";
import { ndarray, type NDArray } from "../../../compiler/ir/ndarray.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import { verify } from "../../../compiler/ir/verify.ts";
import { lastPosition, seqAxis } from "../../../compiler/passes/last-position.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { randomFeeds, relError } from "../../helpers/feeds.ts";
import { buildRandomGraph, recipeArb } from "../lower/random-graph.ts";
import { BINDINGS, MODELS, expectNoRewrite, expectRewrite } from "./fusion-graphs.ts";

const pass = lastPosition;

/** The last index along `axis`, the axis kept with size 1. */
function lastAlong(a: NDArray, axis: number): NDArray {
  const len = a.shape[axis];
  const inner = a.shape.slice(axis + 1).reduce((x, y) => x * y, 1);
  const outer = a.data.length / (len * inner);
  const out = ndarray(a.shape.map((d, i) => (i === axis ? 1 : d)));
  for (let o = 0; o < outer; o++)
    out.data.set(a.data.subarray((o * len + len - 1) * inner, (o * len + len) * inner), o * inner);
  return out;
}

/** On random feeds: each output over T (alone on one axis) is the original's last position; any
 *  other output is unchanged. Returns how many outputs were narrowed. */
function expectLastPositions(original: Graph, bindings = BINDINGS, seed = 1): number {
  const out = pass.run(original);
  verify(out.graph, pass.name);
  const feeds = randomFeeds(original, bindings, seed);
  const want = interpret(original, feeds);
  const got = interpret(out.graph, feeds);
  let narrowed = 0;
  want.forEach((w, i) => {
    const axis = seqAxis(nodeData(original, original.outputs[i]).type.shape);
    const expected = typeof axis === "number" ? lastAlong(w, axis) : w;
    if (typeof axis === "number") narrowed++;
    expect(got[i].shape).toEqual(expected.shape);
    expect(relError(got[i], expected)).toBeLessThanOrEqual(1e-12);
  });
  // A second run finds no output over T left.
  const again = pass.run(out.graph);
  expect(printGraph(again.graph)).toBe(printGraph(out.graph));
  expect(again.rewrites).toBe(0);
  return narrowed;
}

describe("last-position fires", () => {
  it("narrows row-wise work in place, back to a slice of the input", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,6], %g: f32[6], %b: f32[6]) -> (f32[T,6]) {
        %h = tanh(%x) : f32[T,4]
        %m = matmul(%h, %w) {transposeB=false} : f32[T,6]
        %y = layer_norm(%m, %g, %b) {eps=0.00001} : f32[T,6]
        return %y
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,6], %g: f32[6], %b: f32[6]) -> (f32[1,6]) {
        %x_last = slice(%x) {axis=0, start=-1, size=1} : f32[1,4]  # last-position
        %h = tanh(%x_last) : f32[1,4]
        %m = matmul(%h, %w) {transposeB=false} : f32[1,6]
        %y = layer_norm(%m, %g, %b) {eps=0.00001} : f32[1,6]
        return %y
      }`,
    );
    expect(out.rewrites).toBe(4);
  });

  it("slices a value another use needs whole, once, and stops at a causal self-attention", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[1,4]) {
        dim T <= 8 "context"
        %a = attention(%x, %x, %x) {heads=2, scale=0.5, causal=true} : f32[T,4]
        %r = add(%a, %x) : f32[T,4]
        %y = mul(%r, %x) : f32[T,4]
        %s = reduce_sum(%x) {axis=0} : f32[1,4]
        return %y, %s
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[1,4], f32[1,4]) {
        dim T <= 8 "context"
        %a = attention(%x, %x, %x) {heads=2, scale=0.5, causal=true} : f32[T,4]
        %s = reduce_sum(%x) {axis=0} : f32[1,4]
        %a_last = slice(%a) {axis=0, start=-1, size=1} : f32[1,4]  # last-position
        %x_last = slice(%x) {axis=0, start=-1, size=1} : f32[1,4]  # last-position
        %r = add(%a_last, %x_last) : f32[1,4]
        %y = mul(%r, %x_last) : f32[1,4]
        return %y, %s
      }`,
    );
  });

  it("narrows the queries of a cross-attention, not its keys over S; a reshape stops it", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %m: f32[S,4]) -> (f32[T,4]) {
        %q = reshape(%x) {shape=[T,4]} : f32[T,4]
        %a = attention(%q, %m, %m) {heads=2, scale=0.5, causal=false} : f32[T,4]
        return %a
      }`,
      `graph @g(%x: f32[T,4], %m: f32[S,4]) -> (f32[1,4]) {
        %q = reshape(%x) {shape=[T,4]} : f32[T,4]
        %q_last = slice(%q) {axis=0, start=-1, size=1} : f32[1,4]  # last-position
        %a = attention(%q_last, %m, %m) {heads=2, scale=0.5, causal=false} : f32[1,4]
        return %a
      }`,
    );
  });

  it("keeps T's axis wherever it is: a transpose that leaves it, a softmax along another axis", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[2,T,4]) -> (f32[4,T,2]) {
        %s = softmax(%x) {axis=2} : f32[2,T,4]
        %t = transpose(%s) {perm=[2,1,0]} : f32[4,T,2]
        return %t
      }`,
      `graph @g(%x: f32[2,T,4]) -> (f32[4,1,2]) {
        %x_last = slice(%x) {axis=1, start=-1, size=1} : f32[2,1,4]  # last-position
        %s = softmax(%x_last) {axis=2} : f32[2,1,4]
        %t = transpose(%s) {perm=[2,1,0]} : f32[4,1,2]
        return %t
      }`,
    );
  });

  it.each(MODELS)("%s: the last row of the logits, unfused and after the pipeline", (_n, make) => {
    for (const g of [make(), runPipeline(make()).graph])
      for (const t of [1, 5])
        expect(expectLastPositions(g, new Map([...BINDINGS, ["T", t]]))).toBe(1);
  });

  it("on the pipeline's gpt2, everything after the last attention runs on one row", () => {
    const g = pass.run(runPipeline(MODELS[0][1]()).graph).graph;
    const oneRow = new Set<string>();
    const overT = new Set<string>();
    g.nodes.forEachNode((k, n) => {
      if (n.op === "param") return;
      (seqAxis(n.type.shape) === undefined ? oneRow : overT).add(n.op);
    });
    // The out projections, MLPs and LM head (matmul_epilogue, matmul) run on one row in the
    // last block; the attention itself and the q/k/v projection still see every position.
    expect([...oneRow].sort()).toEqual(["layer_norm", "matmul", "matmul_epilogue", "slice"]);
    expect(overT).toContain("attention");
  });
});

describe("last-position must not fire", () => {
  it("on outputs without T", () => {
    expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %m: f32[S,4]) -> (f32[1,4], f32[S,4]) {
        %s = reduce_sum(%x) {axis=0} : f32[1,4]
        %e = exp(%m) : f32[S,4]
        return %s, %e
      }`,
    );
  });

  it("on an output with T on two axes, or in a sum", () => {
    expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[P+T,4]) -> (f32[T,T], f32[P+T,4]) {
        %s = matmul(%x, %x) {transposeB=true} : f32[T,T]
        %e = exp(%y) : f32[P+T,4]
        return %s, %e
      }`,
    );
  });
});

describe("last-position on random graphs", () => {
  it("each output over T is the original's last position, raw and after the pipeline", () => {
    let narrowed = 0;
    fc.assert(
      fc.property(recipeArb, fc.boolean(), fc.integer({ min: 1, max: 6 }), (recipe, src, t) => {
        const g = buildRandomGraph(recipe, src);
        const bindings = new Map([
          ["T", t],
          ["S", 3],
        ]);
        narrowed += expectLastPositions(g, bindings, t);
        narrowed += expectLastPositions(runPipeline(g).graph, bindings, t);
      }),
      { numRuns: 150, seed: 11 },
    );
    expect(narrowed).toBeGreaterThan(100);
  });
});
