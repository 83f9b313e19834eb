/** fuse-scale-softmax: softmax(mask(x · c)) ⇒ scale_softmax(x, [key mask]) {scale=c, causal}. */
import { describe, expect, it } from "vitest";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import { nodeData, type Graph } from "../../../compiler/ir/graph.ts";
import { ndarray } from "../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import { fuseScaleSoftmax } from "../../../compiler/passes/fuse-scale-softmax.ts";
import { DEFAULT_PIPELINE, runPipeline } from "../../../compiler/passes/pipeline.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";
import { expectClose, run } from "../util.ts";

const GPT2_SMALL = { vocab_size: 97, n_positions: 16, n_embd: 24, n_layer: 2, n_head: 3 };
const SEQ2SEQ_SMALL = {
  num_encoder_layers: 2,
  num_decoder_layers: 2,
  emb_size: 24,
  nhead: 3,
  src_vocab_size: 41,
  tgt_vocab_size: 37,
  dim_feedforward: 40,
};
const BINDINGS = new Map([
  ["T", 5],
  ["S", 7],
]);

/** Runs the pass on IR text and checks the printed result against IR text (both printed by
 *  printGraph, so column padding does not matter). */
function expectRewrite(input: string, output: string, rewrites = 1): Graph {
  const g = parseGraph(input);
  const r = fuseScaleSoftmax.run(g);
  expect(printGraph(r.graph)).toBe(printGraph(parseGraph(output)));
  expect(r.rewrites).toBe(rewrites);
  expect(r.notFused).toEqual([]);
  expectEquivalent(r.graph, g, BINDINGS);
  return r.graph;
}

/** Runs the pass where it must not fire: the graph is unchanged, and the reasons are returned. */
function expectRefused(input: string): string[] {
  const g = parseGraph(input);
  const r = fuseScaleSoftmax.run(g);
  expect(r.rewrites).toBe(0);
  expect(printGraph(r.graph)).toBe(printGraph(g));
  return r.notFused.map((n) => `${n.pattern} at ${n.at}: ${n.reason}`);
}

describe("fuse-scale-softmax fires", () => {
  it("mul by 1/√D, causal_mask, masked_fill −∞ with a reshaped key mask, softmax", () => {
    const g = expectRewrite(
      `graph @t(%s: f32[2,T,T], %pad: i32[T]) -> (f32[2,T,T]) {
        %c = const() {value=0.5} : f32[]
        %m = mul(%s, %c) : f32[2,T,T]
        %cm = causal_mask(%m) : f32[2,T,T]
        %pm = reshape(%pad) {shape=[1,1,T]} : i32[1,1,T]
        %f = masked_fill(%cm, %pm) {value=-inf} : f32[2,T,T]
        %p = softmax(%f) {axis=2} : f32[2,T,T]
        return %p
      }`,
      `graph @t(%s: f32[2,T,T], %pad: i32[T]) -> (f32[2,T,T]) {
        %pm = reshape(%pad) {shape=[1,1,T]} : i32[1,1,T]
        %p = scale_softmax(%s, %pm) {scale=0.5, causal=true} : f32[2,T,T]  # fuse-scale-softmax
        return %p
      }`,
    );
    const p = nodeData(g, "p");
    expect(p.covers).toEqual(["m", "cm", "f", "p"]);
    expect(p.origin).toBe("fuse-scale-softmax");
    expect(p.loc).toBe("<ir>:7"); // the softmax's line
  });

  it("the constant first (c · x), and a key mask before the causal mask", () => {
    expectRewrite(
      `graph @t(%s: f32[T,S], %pad: f32[S]) -> (f32[T,S]) {
        %c = const() {value=0.25} : f32[]
        %m = mul(%c, %s) : f32[T,S]
        %f = masked_fill(%m, %pad) {value=-inf} : f32[T,S]
        %cm = causal_mask(%f) : f32[T,S]
        %p = softmax(%cm) {axis=1} : f32[T,S]
        return %p
      }`,
      `graph @t(%s: f32[T,S], %pad: f32[S]) -> (f32[T,S]) {
        %p = scale_softmax(%s, %pad) {scale=0.25, causal=true} : f32[T,S]  # fuse-scale-softmax
        return %p
      }`,
    );
  });

  it("div by a constant is a scale of 1/c; a [1,1] constant is a scalar", () => {
    expectRewrite(
      `graph @t(%s: f32[3,T,T]) -> (f32[3,T,T]) {
        %c = const() {value=8} : f32[1,1]
        %m = div(%s, %c) : f32[3,T,T]
        %p = softmax(%m) {axis=2} : f32[3,T,T]
        return %p
      }`,
      `graph @t(%s: f32[3,T,T]) -> (f32[3,T,T]) {
        %p = scale_softmax(%s) {scale=0.125, causal=false} : f32[3,T,T]  # fuse-scale-softmax
        return %p
      }`,
    );
  });

  it("a mask without a mul fuses with scale 1; a const left with other users stays", () => {
    expectRewrite(
      `graph @t(%s: f32[T,T], %u: f32[T,T]) -> (f32[T,T], f32[T,T]) {
        %c = const() {value=3} : f32[]
        %cm = causal_mask(%s) : f32[T,T]
        %p = softmax(%cm) {axis=1} : f32[T,T]
        %m = mul(%u, %c) : f32[T,T]
        %q = softmax(%m) {axis=1} : f32[T,T]
        %o = add(%q, %c) : f32[T,T]
        return %p, %o
      }`,
      `graph @t(%s: f32[T,T], %u: f32[T,T]) -> (f32[T,T], f32[T,T]) {
        %c = const() {value=3} : f32[]
        %p = scale_softmax(%s) {scale=1, causal=true} : f32[T,T]  # fuse-scale-softmax
        %q = scale_softmax(%u) {scale=3, causal=false} : f32[T,T]  # fuse-scale-softmax
        %o = add(%q, %c) : f32[T,T]
        return %p, %o
      }`,
      2,
    );
  });
});

describe("fuse-scale-softmax does not fire", () => {
  it("on a bare softmax (nothing to fuse), and says nothing", () => {
    expect(
      expectRefused(`graph @t(%s: f32[T,T]) -> (f32[T,T]) {
        %p = softmax(%s) {axis=1} : f32[T,T]
        return %p
      }`),
    ).toEqual([]);
  });

  it("when the softmax is not over the last axis", () => {
    expect(
      expectRefused(`graph @t(%s: f32[T,S]) -> (f32[T,S]) {
        %c = const() {value=0.5} : f32[]
        %m = mul(%s, %c) : f32[T,S]
        %p = softmax(%m) {axis=0} : f32[T,S]
        return %p
      }`),
    ).toEqual(["fuse-scale-softmax at %p (<ir>:4): softmax over axis 0, not the last (1)"]);
  });

  it("when an intermediate has a second user (or is an output)", () => {
    expect(
      expectRefused(`graph @t(%s: f32[T,T]) -> (f32[T,T], f32[T,T]) {
        %c = const() {value=0.5} : f32[]
        %m = mul(%s, %c) : f32[T,T]
        %cm = causal_mask(%m) : f32[T,T]
        %p = softmax(%cm) {axis=1} : f32[T,T]
        %o = add(%m, %p) : f32[T,T]
        return %o, %cm
      }`),
    ).toEqual(["fuse-scale-softmax at %p (<ir>:5): %cm (<ir>:4) has another user"]);
  });

  it("when the scaled scores have a second user", () => {
    expect(
      expectRefused(`graph @t(%s: f32[T,T]) -> (f32[T,T], f32[T,T]) {
        %c = const() {value=0.5} : f32[]
        %m = mul(%s, %c) : f32[T,T]
        %p = softmax(%m) {axis=1} : f32[T,T]
        return %p, %m
      }`),
    ).toEqual(["fuse-scale-softmax at %p (<ir>:4): %m (<ir>:3) has another user"]);
  });

  it("when masked_fill fills a finite value", () => {
    expect(
      expectRefused(`graph @t(%s: f32[T,T], %pad: i32[T]) -> (f32[T,T]) {
        %c = const() {value=0.5} : f32[]
        %m = mul(%s, %c) : f32[T,T]
        %f = masked_fill(%m, %pad) {value=-1000000000} : f32[T,T]
        %p = softmax(%f) {axis=1} : f32[T,T]
        return %p
      }`),
    ).toEqual(["fuse-scale-softmax at %p (<ir>:5): %f (<ir>:4) fills -1000000000, not −∞"]);
  });

  it("when the multiplier is not a constant, or not a scalar", () => {
    expect(
      expectRefused(`graph @t(%s: f32[T,4], %k: f32[]) -> (f32[T,4], f32[T,4]) {
        %m = mul(%s, %k) : f32[T,4]
        %p = softmax(%m) {axis=1} : f32[T,4]
        %c = const() {value=2} : f32[4]
        %m2 = mul(%s, %c) : f32[T,4]
        %cm = causal_mask(%m2) : f32[T,4]
        %p2 = softmax(%cm) {axis=1} : f32[T,4]
        return %p, %p2
      }`),
    ).toEqual([
      "fuse-scale-softmax at %p (<ir>:3): the multiplier in %m (<ir>:2) is not a scalar constant",
      "fuse-scale-softmax at %p2 (<ir>:7): the multiplier in %m2 (<ir>:5) is not a scalar constant",
    ]);
  });

  it("when a scalar constant would broadcast x to a bigger shape", () => {
    expect(
      expectRefused(`graph @t(%s: f32[4]) -> (f32[1,4]) {
        %c = const() {value=2} : f32[1,1]
        %m = mul(%s, %c) : f32[1,4]
        %p = softmax(%m) {axis=1} : f32[1,4]
        return %p
      }`),
    ).toEqual([
      "fuse-scale-softmax at %p (<ir>:4): the scalar multiplier in %m (<ir>:3) broadcasts x to a bigger shape",
    ]);
  });
});

describe("fuse-scale-softmax on the reference models", () => {
  const models: [string, () => Graph, number][] = [
    ["gpt2", () => buildGraph(gpt2, GPT2_SMALL), 2],
    ["seq2seq", () => buildGraph(seq2seq, SEQ2SEQ_SMALL), 6],
  ];
  for (const [name, make, softmaxes] of models)
    it(`${name}: every attention softmax fuses; the same numbers; idempotent`, () => {
      const g = make();
      const r = fuseScaleSoftmax.run(g);
      expect(r.rewrites).toBe(softmaxes);
      expect(r.notFused).toEqual([]);
      const ops = r.graph.nodes.mapNodes((_k, n) => n.op);
      expect(ops.filter((o) => o === "softmax")).toEqual([]);
      expect(ops.filter((o) => o === "causal_mask" || o === "mul").length).toBeLessThan(
        g.nodes.mapNodes((_k, n) => n.op).filter((o) => o === "causal_mask" || o === "mul").length,
      );
      expectEquivalent(r.graph, g, BINDINGS);
      const again = fuseScaleSoftmax.run(r.graph);
      expect(again.rewrites).toBe(0);
      expect(printGraph(again.graph)).toBe(printGraph(r.graph));
      expect(r.graph).not.toBe(g);
      expect(printGraph(g)).toBe(printGraph(make())); // the input graph is untouched
    });

  for (const [name, make] of models)
    it(`${name}: the whole default pipeline computes the same numbers`, () => {
      const g = make();
      expectEquivalent(runPipeline(g, DEFAULT_PIPELINE).graph, g, BINDINGS);
    });
});

describe("scale_softmax edge cases, fused against unfused", () => {
  const graph = parseGraph(`graph @t(%x: f32[3,4], %pad: i32[4]) -> (f32[3,4]) {
    %c = const() {value=1} : f32[]
    %m = mul(%x, %c) : f32[3,4]
    %cm = causal_mask(%m) : f32[3,4]
    %pm = reshape(%pad) {shape=[1,4]} : i32[1,4]
    %f = masked_fill(%cm, %pm) {value=-inf} : f32[3,4]
    %p = softmax(%f) {axis=1} : f32[3,4]
    return %p
  }`);
  const fused = fuseScaleSoftmax.run(graph).graph;
  const both = (x: number[], pad: number[]) => {
    const inputs = { x: ndarray([3, 4], x), pad: ndarray([4], pad) };
    const [want] = run(graph, inputs);
    const [got] = run(fused, inputs);
    expectClose(got, want, 0);
    expect(got.data.every(Number.isFinite)).toBe(true);
    return got;
  };
  const softmaxRow = (xs: number[]) => {
    const m = Math.max(...xs);
    const e = xs.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };

  it("is fused", () => {
    expect(nodeData(fused, "p").op).toBe("scale_softmax");
  });

  it("rows of very large numbers (10000…10003) do not overflow", () => {
    // Tq = 3, Tk = 4: query i sees keys 0..i+1.
    const r = both(
      [10000, 10001, 10002, 10003, 10000, 10001, 10002, 10003, 10000, 10001, 10002, 10003],
      [0, 0, 0, 0],
    );
    expectClose(
      r,
      [...softmaxRow([0, 1]), 0, 0, ...softmaxRow([0, 1, 2]), 0, ...softmaxRow([0, 1, 2, 3])],
      1e-15,
    );
  });

  it("a fully masked row gives zeros, never NaN", () => {
    // keys 0 and 1 padded: query 0 sees keys 0..1 only, so it sees nothing.
    const r = both([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [1, 1, 0, 0]);
    expectClose(r, [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, ...softmaxRow([11, 12])], 1e-15);
  });

  it("NaN, ∞ or 1e10 in masked positions do not leak", () => {
    // key 1 padded; causal hides (0,2), (0,3), (1,3).
    const [a, b] = softmaxRow([2, 3]);
    const [c, d, e] = softmaxRow([4, 5, 6]);
    const r = both([1, 1e10, NaN, 1e10, 2, NaN, 3, Infinity, 4, 1e10, 5, 6], [0, 1, 0, 0]);
    expectClose(r, [1, 0, 0, 0, a, 0, b, 0, c, 0, d, e], 1e-15);
  });
});
