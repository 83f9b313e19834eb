import { describe, expect, it } from "vitest";
import { nodeData } from "../../../compiler/ir/graph.ts";
import { fuseMatmulEpilogue } from "../../../compiler/passes/fuse-matmul-epilogue.ts";
import { fuseResidualLayerNorm } from "../../../compiler/passes/fuse-residual-layer-norm.ts";
import { DEFAULT_PIPELINE, runPipeline } from "../../../compiler/passes/pipeline.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";
import {
  BINDINGS,
  MODELS,
  checkPasses,
  expectNoRewrite,
  expectPropertyHolds,
  expectRewrite,
  gpt2Small,
  opCounts,
  seq2seqSmall,
} from "./fusion-graphs.ts";

const pass = fuseResidualLayerNorm;

describe("fuse-residual-layer-norm fires", () => {
  it("folds the residual add into the norm", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %res = add(%x, %y) : f32[T,4]
        %ln = layer_norm(%res, %g, %b) {eps=0.00001} : f32[T,4]
        return %ln
      }`,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %ln = layer_norm_map(%g, %b, %x, %y) {eps=0.00001, expr="add($0, $1)"} : f32[T,4]  # fuse-residual-layer-norm
        return %ln
      }`,
    );
    expect(out.rewrites).toBe(1);
    expect(nodeData(out.graph, "ln").covers).toEqual(["res", "ln"]);
    expect(nodeData(out.graph, "ln").loc).toBe("<ir>:3");
  });

  it("takes any elementwise prologue, with broadcasting and scalar consts", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %z: f32[T,1], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %c = const() {value=2} : f32[]
        %s = mul(%x, %c) : f32[T,4]
        %t = tanh(%z) : f32[T,1]
        %res = add(%s, %t) : f32[T,4]
        %ln = layer_norm(%res, %g, %b) {eps=0.00001} : f32[T,4]
        return %ln
      }`,
      `graph @g(%x: f32[T,4], %z: f32[T,1], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %ln = layer_norm_map(%g, %b, %x, %z) {eps=0.00001, expr="add(mul($0, 2), tanh($1))"} : f32[T,4]  # fuse-residual-layer-norm
        return %ln
      }`,
    );
  });

  it("recomputes a value read twice inside the prologue, and extends a layer_norm_map", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %t = exp(%x) : f32[T,4]
        %u = mul(%t, %y) : f32[T,4]
        %v = sub(%t, %u) : f32[T,4]
        %ln = layer_norm_map(%g, %b, %v, %x) {eps=0.001, expr="div($0, $1)"} : f32[T,4]
        return %ln
      }`,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %ln = layer_norm_map(%g, %b, %x, %y) {eps=0.001, expr="div(sub(exp($0), mul(exp($0), $1)), $0)"} : f32[T,4]  # fuse-residual-layer-norm
        return %ln
      }`,
    );
  });

  it("keeps a value the norm also reads as γ, and takes what only the sum reads", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[4], %y: f32[4], %b: f32[4]) -> (f32[4]) {
        %e = exp(%y) : f32[4]
        %gamma = neg(%y) : f32[4]
        %s = add(%x, %e) : f32[4]
        %p = mul(%s, %gamma) : f32[4]
        %ln = layer_norm(%p, %gamma, %b) {eps=0.00001} : f32[4]
        return %ln
      }`,
      `graph @g(%x: f32[4], %y: f32[4], %b: f32[4]) -> (f32[4]) {
        %gamma = neg(%y) : f32[4]
        %ln = layer_norm_map(%gamma, %b, %x, %y, %gamma) {eps=0.00001, expr="mul(add($0, exp($1)), $2)"} : f32[4]  # fuse-residual-layer-norm
        return %ln
      }`,
    );
    expect(out.notFused.map((n) => n.reason)).toEqual([
      "a second user: %gamma is read by %ln and %p, so it is materialized",
    ]);
  });
});

describe("fuse-residual-layer-norm must not fire", () => {
  it("when the sum has a second user (the pre-LN residual stream)", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %res = add(%x, %y) : f32[T,4]
        %ln = layer_norm(%res, %g, %b) {eps=0.00001} : f32[T,4]
        %next = add(%res, %ln) : f32[T,4]
        return %ln, %next
      }`,
    );
    expect(out.notFused).toEqual([
      {
        pattern: "fuse-residual-layer-norm",
        at: "%ln (<ir>:3)",
        reason: "a second user: %res is read by %ln and %next, so it is materialized",
      },
    ]);
  });

  it("when the sum is a graph output", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %res = add(%x, %y) : f32[T,4]
        %ln = layer_norm(%res, %g, %b) {eps=0.00001} : f32[T,4]
        return %ln, %res
      }`,
    );
    expect(out.notFused.map((n) => n.reason)).toEqual([
      "a second user: %res is read by %ln and the graph outputs, so it is materialized",
    ]);
  });

  it("when the input is not elementwise, and says nothing", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %h = matmul(%x, %w) {transposeB=false} : f32[T,4]
        %ln = layer_norm(%h, %g, %b) {eps=0.00001} : f32[T,4]
        return %ln
      }`,
    );
    expect(out.notFused).toEqual([]);
  });
});

describe("fuse-residual-layer-norm on the reference models", () => {
  for (const [name, make] of MODELS) {
    it(`keeps ${name} equivalent and is idempotent`, () => {
      checkPasses([pass], make());
      checkPasses([fuseMatmulEpilogue, pass], make());
    });
    it(`keeps ${name} equivalent after the whole default pipeline`, () => {
      const g = make();
      expectEquivalent(runPipeline(g, DEFAULT_PIPELINE).graph, g, BINDINGS);
    });
  }

  it("takes every post-LN residual add of seq2seq when it runs alone", () => {
    const out = pass.run(seq2seqSmall());
    // 2 per encoder layer, 3 per decoder layer; each reads its residual stream whole
    expect(out.rewrites).toBe(2 * 2 + 2 * 3);
    expect(opCounts(out.graph).layer_norm_map).toBe(10);
    // the first norm of each stack: the embedding sum is also the first attention's input
    expect(out.notFused.map((n) => n.reason)).toEqual([
      "a second user: %x is read by %qkv_mm and %res, so it is materialized",
      "a second user: %x_1 is read by %qkv_mm_2 and %res_4, so it is materialized",
    ]);
  });

  it("refuses each pre-LN norm of GPT-2: the residual stream is read twice", () => {
    const out = pass.run(gpt2Small());
    // ln_f alone folds the last residual add (and its bias add): nothing else reads it
    expect(out.rewrites).toBe(1);
    expect(nodeData(out.graph, "ln_4").op).toBe("layer_norm_map");
    expect(out.notFused.map((n) => `${n.at.split(" ")[0]}: ${n.reason}`)).toEqual([
      "%ln: a second user: %x is read by %ln and %res, so it is materialized",
      "%ln_1: a second user: %res is read by %ln_1 and %res_1, so it is materialized",
      "%ln_2: a second user: %res_1 is read by %ln_2 and %res_2, so it is materialized",
      "%ln_3: a second user: %res_2 is read by %ln_3 and %res_3, so it is materialized",
      "%ln_4: a second user: %res_2 is read by %ln_3 and %res_3, so it is materialized",
    ]);
  });
});

describe("fuse-residual-layer-norm property", () => {
  it("keeps random graphs equivalent and is idempotent", () => {
    expectPropertyHolds([pass]);
  });
});
