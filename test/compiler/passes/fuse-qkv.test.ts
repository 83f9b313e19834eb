/** fuse-qkv: projections of one input merge into one matmul (and one bias add), then slices. */
import { describe, expect, it } from "vitest";
import { ModelBuilder } from "../../../compiler/dsl/builder.ts";
import { linear, multiHeadAttention } from "../../../compiler/dsl/layers.ts";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import { nodeData, operands, type Graph } from "../../../compiler/ir/graph.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import { fuseAttention } from "../../../compiler/passes/fuse-attention.ts";
import { fuseQkv } from "../../../compiler/passes/fuse-qkv.ts";
import { fuseScaleSoftmax } from "../../../compiler/passes/fuse-scale-softmax.ts";
import { DEFAULT_PIPELINE, runPipeline } from "../../../compiler/passes/pipeline.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";
import { build } from "../util.ts";

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

function expectIdempotent(g: Graph): void {
  const again = fuseQkv.run(g);
  expect(again.rewrites).toBe(0);
  expect(printGraph(again.graph)).toBe(printGraph(g));
}

/** Runs the pass on IR text and checks the printed result against IR text. */
function expectRewrite(input: string, output: string, rewrites = 1): Graph {
  const g = parseGraph(input);
  const r = fuseQkv.run(g);
  expect(printGraph(r.graph)).toBe(printGraph(parseGraph(output)));
  expect(r.rewrites).toBe(rewrites);
  expect(r.notFused).toEqual([]);
  expectEquivalent(r.graph, g, BINDINGS);
  expectIdempotent(r.graph);
  expect(printGraph(g)).toBe(printGraph(parseGraph(input))); // the input is untouched
  return r.graph;
}

/** Runs the pass where it must not fire: the graph is unchanged; returns the reasons. */
function expectRefused(input: string): string[] {
  const g = parseGraph(input);
  const r = fuseQkv.run(g);
  expect(r.rewrites).toBe(0);
  expect(printGraph(r.graph)).toBe(printGraph(g));
  return r.notFused.map((n) => `${n.at}: ${n.reason}`);
}

describe("fuse-qkv fires", () => {
  it("three [in,out] projections with biases (either operand order) merge, biases too", () => {
    const g = expectRewrite(
      `graph @t(%x: f32[T,4]) -> (f32[T,4], f32[T,4], f32[T,6]) {
        %wq = param() {name="q.weight"} : f32[4,4]
        %bq = param() {name="q.bias"} : f32[4]
        %wk = param() {name="k.weight"} : f32[4,4]
        %bk = param() {name="k.bias"} : f32[4]
        %wv = param() {name="v.weight"} : f32[4,6]
        %bv = param() {name="v.bias"} : f32[6]
        %q_mm = matmul(%x, %wq) {transposeB=false} : f32[T,4]
        %q = add(%q_mm, %bq) : f32[T,4]
        %k_mm = matmul(%x, %wk) {transposeB=false} : f32[T,4]
        %k = add(%bk, %k_mm) : f32[T,4]
        %v_mm = matmul(%x, %wv) {transposeB=false} : f32[T,6]
        %v = add(%v_mm, %bv) : f32[T,6]
        return %q, %k, %v
      }`,
      `graph @t(%x: f32[T,4]) -> (f32[T,4], f32[T,4], f32[T,6]) {
        %wq = param() {name="q.weight"} : f32[4,4]
        %bq = param() {name="q.bias"} : f32[4]
        %wk = param() {name="k.weight"} : f32[4,4]
        %bk = param() {name="k.bias"} : f32[4]
        %wv = param() {name="v.weight"} : f32[4,6]
        %bv = param() {name="v.bias"} : f32[6]
        %x_w = concat(%wq, %wk, %wv) {axis=1} : f32[4,14]  # fuse-qkv
        %x_proj_mm = matmul(%x, %x_w) {transposeB=false} : f32[T,14]  # fuse-qkv
        %x_b = concat(%bq, %bk, %bv) {axis=0} : f32[14]  # fuse-qkv
        %x_proj = add(%x_proj_mm, %x_b) : f32[T,14]  # fuse-qkv
        %q = slice(%x_proj) {axis=1, start=0, size=4} : f32[T,4]  # fuse-qkv
        %k = slice(%x_proj) {axis=1, start=4, size=4} : f32[T,4]  # fuse-qkv
        %v = slice(%x_proj) {axis=1, start=8, size=6} : f32[T,6]  # fuse-qkv
        return %q, %k, %v
      }`,
    );
    expect(nodeData(g, "x_proj_mm").covers).toEqual(["q_mm", "k_mm", "v_mm"]);
    expect(nodeData(g, "x_proj").covers).toEqual(["q", "k", "v"]);
    expect(nodeData(g, "x_proj_mm").loc).toBe("<ir>:8"); // the first projection's line
    expect(nodeData(g, "k").loc).toBe("<ir>:11"); // each slice keeps the line it replaces
  });

  it("two transposeB projections by slices of one [out,in] param (cross-attention's k and v)", () => {
    expectRewrite(
      `graph @t(%x: f32[T,4], %mem: f32[S,4]) -> (f32[T,4], f32[S,4], f32[S,4]) {
        %w = param() {name="in_proj_weight"} : f32[12,4]
        %wq = slice(%w) {axis=0, start=0, size=4} : f32[4,4]
        %wk = slice(%w) {axis=0, start=4, size=4} : f32[4,4]
        %wv = slice(%w) {axis=0, start=8, size=4} : f32[4,4]
        %q = matmul(%x, %wq) {transposeB=true} : f32[T,4]
        %k = matmul(%mem, %wk) {transposeB=true} : f32[S,4]
        %v = matmul(%mem, %wv) {transposeB=true} : f32[S,4]
        return %q, %k, %v
      }`,
      `graph @t(%x: f32[T,4], %mem: f32[S,4]) -> (f32[T,4], f32[S,4], f32[S,4]) {
        %w = param() {name="in_proj_weight"} : f32[12,4]
        %wq = slice(%w) {axis=0, start=0, size=4} : f32[4,4]
        %wk = slice(%w) {axis=0, start=4, size=4} : f32[4,4]
        %wv = slice(%w) {axis=0, start=8, size=4} : f32[4,4]
        %q = matmul(%x, %wq) {transposeB=true} : f32[T,4]
        %mem_w = concat(%wk, %wv) {axis=0} : f32[8,4]  # fuse-qkv
        %mem_proj = matmul(%mem, %mem_w) {transposeB=true} : f32[S,8]  # fuse-qkv
        %k = slice(%mem_proj) {axis=1, start=0, size=4} : f32[S,4]  # fuse-qkv
        %v = slice(%mem_proj) {axis=1, start=4, size=4} : f32[S,4]  # fuse-qkv
        return %q, %k, %v
      }`,
    );
  });

  it("when not every projection has a bias (or its matmul has another user), the adds stay on the slices", () => {
    expectRewrite(
      `graph @t(%x: f32[T,4]) -> (f32[T,2], f32[T,3], f32[T,2], f32[T,2]) {
        %wa = param() {name="a.weight"} : f32[4,2]
        %ba = param() {name="a.bias"} : f32[2]
        %wb = param() {name="b.weight"} : f32[4,3]
        %wc = param() {name="c.weight"} : f32[4,2]
        %bc = param() {name="c.bias"} : f32[2]
        %a_mm = matmul(%x, %wa) {transposeB=false} : f32[T,2]
        %a = add(%a_mm, %ba) : f32[T,2]
        %b = matmul(%x, %wb) {transposeB=false} : f32[T,3]
        %c_mm = matmul(%x, %wc) {transposeB=false} : f32[T,2]
        %c = add(%c_mm, %bc) : f32[T,2]
        return %a, %b, %c, %c_mm
      }`,
      `graph @t(%x: f32[T,4]) -> (f32[T,2], f32[T,3], f32[T,2], f32[T,2]) {
        %wa = param() {name="a.weight"} : f32[4,2]
        %ba = param() {name="a.bias"} : f32[2]
        %wb = param() {name="b.weight"} : f32[4,3]
        %wc = param() {name="c.weight"} : f32[4,2]
        %bc = param() {name="c.bias"} : f32[2]
        %x_w = concat(%wa, %wb, %wc) {axis=1} : f32[4,7]  # fuse-qkv
        %x_proj = matmul(%x, %x_w) {transposeB=false} : f32[T,7]  # fuse-qkv
        %a_mm = slice(%x_proj) {axis=1, start=0, size=2} : f32[T,2]  # fuse-qkv
        %a = add(%a_mm, %ba) : f32[T,2]
        %b = slice(%x_proj) {axis=1, start=2, size=3} : f32[T,3]  # fuse-qkv
        %c_mm = slice(%x_proj) {axis=1, start=5, size=2} : f32[T,2]  # fuse-qkv
        %c = add(%c_mm, %bc) : f32[T,2]
        return %a, %b, %c, %c_mm
      }`,
    );
  });

  it("projections of a [B,T,in] input slice along the last axis", () => {
    expectRewrite(
      `graph @t(%x: f32[2,T,4]) -> (f32[2,T,3], f32[2,T,5]) {
        %wa = param() {name="a"} : f32[3,4]
        %wb = param() {name="b"} : f32[5,4]
        %a = matmul(%x, %wa) {transposeB=true} : f32[2,T,3]
        %b = matmul(%x, %wb) {transposeB=true} : f32[2,T,5]
        return %a, %b
      }`,
      `graph @t(%x: f32[2,T,4]) -> (f32[2,T,3], f32[2,T,5]) {
        %wa = param() {name="a"} : f32[3,4]
        %wb = param() {name="b"} : f32[5,4]
        %x_w = concat(%wa, %wb) {axis=0} : f32[8,4]  # fuse-qkv
        %x_proj = matmul(%x, %x_w) {transposeB=true} : f32[2,T,8]  # fuse-qkv
        %a = slice(%x_proj) {axis=2, start=0, size=3} : f32[2,T,3]  # fuse-qkv
        %b = slice(%x_proj) {axis=2, start=3, size=5} : f32[2,T,5]  # fuse-qkv
        return %a, %b
      }`,
    );
  });
});

describe("fuse-qkv does not fire", () => {
  it("on projections of different inputs, or a single projection (nothing to say)", () => {
    expect(
      expectRefused(`graph @t(%x: f32[T,4], %y: f32[T,4]) -> (f32[T,4], f32[T,4]) {
        %wa = param() {name="a"} : f32[4,4]
        %wb = param() {name="b"} : f32[4,4]
        %a = matmul(%x, %wa) {transposeB=false} : f32[T,4]
        %b = matmul(%y, %wb) {transposeB=false} : f32[T,4]
        return %a, %b
      }`),
    ).toEqual([]);
  });

  it("on projections that disagree on transposeB", () => {
    expect(
      expectRefused(`graph @t(%x: f32[T,4]) -> (f32[T,4], f32[T,4]) {
        %wa = param() {name="a"} : f32[4,4]
        %wb = param() {name="b"} : f32[4,4]
        %a = matmul(%x, %wa) {transposeB=false} : f32[T,4]
        %b = matmul(%x, %wb) {transposeB=true} : f32[T,4]
        return %a, %b
      }`),
    ).toEqual([
      "%a (<ir>:4): no other projection of %x has transposeB=false",
      "%b (<ir>:5): no other projection of %x has transposeB=true",
    ]);
  });

  it("on a weight computed from activations", () => {
    expect(
      expectRefused(`graph @t(%x: f32[T,4], %h: f32[4,4]) -> (f32[T,4], f32[T,4]) {
        %wa = param() {name="a"} : f32[4,4]
        %wb = mul(%wa, %h) : f32[4,4]
        %a = matmul(%x, %wa) {transposeB=false} : f32[T,4]
        %b = matmul(%x, %wb) {transposeB=false} : f32[T,4]
        return %a, %b
      }`),
    ).toEqual(["%b (<ir>:5): its weight %wb (<ir>:3) is computed from activations"]);
  });

  it("on an input that is itself param-only (a weight transform)", () => {
    expect(
      expectRefused(`graph @t(%x: f32[T,4]) -> (f32[T,4], f32[4,4], f32[4,4]) {
        %e = param() {name="e"} : f32[4,4]
        %wa = param() {name="a"} : f32[4,4]
        %wb = param() {name="b"} : f32[4,4]
        %a = matmul(%e, %wa) {transposeB=false} : f32[4,4]
        %b = matmul(%e, %wb) {transposeB=false} : f32[4,4]
        %y = matmul(%x, %a) {transposeB=false} : f32[T,4]
        return %y, %a, %b
      }`),
    ).toEqual([]);
  });
});

describe("fuse-qkv on models", () => {
  it("gpt2 already has one merged projection per layer: nothing to do", () => {
    const g = buildGraph(gpt2, GPT2_SMALL);
    const r = fuseQkv.run(g);
    expect(r.rewrites).toBe(0);
    expect(r.notFused).toEqual([]);
    expect(printGraph(r.graph)).toBe(printGraph(g));
  });

  it("seq2seq: the k and v projections of the encoder memory, in every decoder layer, become one matmul", () => {
    const g = buildGraph(seq2seq, SEQ2SEQ_SMALL);
    const r = fuseQkv.run(g);
    expect(r.rewrites).toBe(1);
    expect(r.notFused).toEqual([]);
    const ofMemory = (h: Graph) =>
      h.nodes
        .filterNodes((_k, n) => n.op === "matmul")
        .filter((k) => operands(h, k)[0] === "memory");
    expect(ofMemory(g).length).toBe(4);
    expect(ofMemory(r.graph)).toEqual(["memory_proj_mm"]);
    expect(nodeData(r.graph, "memory_proj_mm").type.shape).toEqual(["S", 96]);
    expectEquivalent(r.graph, g, BINDINGS);
    expectIdempotent(r.graph);
  });

  it("separate q, k, v weights: one matmul, then one attention", () => {
    const g = build((m: ModelBuilder) => {
      const x = m.input("x", "f32", ["T", 8]);
      const proj = (n: string) =>
        linear(
          x,
          {
            weight: m.param(`${n}.weight`, [8, 8]),
            bias: m.param(`${n}.bias`, [8]),
            layout: "out_in",
          },
          n,
        );
      return multiHeadAttention(proj("q"), proj("k"), proj("v"), 2, { causal: true });
    });
    const r = runPipeline(g, [fuseQkv, fuseScaleSoftmax, fuseAttention]);
    expect(r.graph.nodes.filterNodes((_k, n) => n.op === "matmul")).toEqual(["x_proj_mm"]);
    const out = nodeData(r.graph, r.graph.outputs[0]);
    expect(out.op).toBe("attention");
    expect(operands(r.graph, r.graph.outputs[0])).toEqual(["q", "k", "v"]);
    expectEquivalent(r.graph, g, BINDINGS);
  });

  for (const [name, make] of [
    ["gpt2", () => buildGraph(gpt2, GPT2_SMALL)],
    ["seq2seq", () => buildGraph(seq2seq, SEQ2SEQ_SMALL)],
  ] as const)
    it(`${name}: the whole default pipeline computes the same numbers`, () => {
      const g = make();
      expectEquivalent(runPipeline(g, DEFAULT_PIPELINE).graph, g, BINDINGS);
    });
});
