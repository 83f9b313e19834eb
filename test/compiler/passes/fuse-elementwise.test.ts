import { describe, expect, it } from "vitest";
import { formatExpr } from "../../../compiler/ir/expr.ts";
import { nodeData, operands, topoOrder, type Graph } from "../../../compiler/ir/graph.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { MAX_TERMS, exprSize } from "../../../compiler/passes/expr-fusion.ts";
import { fuseElementwise } from "../../../compiler/passes/fuse-elementwise.ts";
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
  seq2seqSmall,
} from "./fusion-graphs.ts";

const pass = fuseElementwise;
const MINE = [fuseMatmulEpilogue, fuseResidualLayerNorm, fuseElementwise];

describe("fuse-elementwise fires", () => {
  it("makes the embedding scale and positional add one map over what they read", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%ids: i32[T], %e: f32[11,4]) -> (f32[T,4]) {
        %emb = gather(%e, %ids) : f32[T,4]
        %c = const() {value=2} : f32[]
        %mul = mul(%emb, %c) : f32[T,4]
        %pos = range() {start=0, size=T} : i32[T]
        %pe = sinusoidal(%pos) {dim=4} : f32[T,4]
        %x = add(%mul, %pe) : f32[T,4]
        return %x
      }`,
      `graph @g(%ids: i32[T], %e: f32[11,4]) -> (f32[T,4]) {
        %emb = gather(%e, %ids) : f32[T,4]
        %pos = range() {start=0, size=T} : i32[T]
        %pe = sinusoidal(%pos) {dim=4} : f32[T,4]
        %x = map(%emb, %pe) {expr="add(mul($0, 2), $1)"} : f32[T,4]  # fuse-elementwise
        return %x
      }`,
    );
    expect(out.rewrites).toBe(1);
    expect(nodeData(out.graph, "x").covers).toEqual(["c", "mul", "x"]);
  });

  it("makes a lone elementwise op a map, and merges maps with broadcasting", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %z: f32[T,1], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %s = add(%x, %y) : f32[T,4]
        %m = map(%z, %b) {expr="mul($1, exp($0))"} : f32[T,4]
        %r = sub(%m, %x) : f32[T,4]
        return %s, %r
      }`,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %z: f32[T,1], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %s = map(%x, %y) {expr="add($0, $1)"} : f32[T,4]  # fuse-elementwise
        %r = map(%b, %z, %x) {expr="sub(mul($0, exp($1)), $2)"} : f32[T,4]  # fuse-elementwise
        return %s, %r
      }`,
    );
  });

  it("folds work into a matmul_epilogue's extras and a layer_norm_map's inputs (prologues)", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %t = tanh(%y) : f32[T,4]
        %h = matmul_epilogue(%x, %w, %t) {transposeB=false, expr="add(acc, $0)"} : f32[T,4]
        %n = neg(%x) : f32[T,4]
        %ln = layer_norm_map(%g, %b, %h, %n) {eps=0.00001, expr="add($0, $1)"} : f32[T,4]
        return %ln
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %y: f32[T,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %h = matmul_epilogue(%x, %w, %y) {transposeB=false, expr="add(acc, tanh($0))"} : f32[T,4]  # fuse-elementwise
        %ln = layer_norm_map(%g, %b, %h, %x) {eps=0.00001, expr="add($0, neg($1))"} : f32[T,4]  # fuse-elementwise
        return %ln
      }`,
    );
  });

  it("applies the epilogue rule, then takes a value the epilogue read twice", () => {
    // h = x·w + b feeds both factors of h·tanh(h): the matmul pass stops at h (two users); here
    // the map made of h·tanh(h) becomes h's only user, so the whole becomes one epilogue.
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,4]
        %h = add(%mm, %b) : f32[T,4]
        %t = tanh(%h) : f32[T,4]
        %y = mul(%h, %t) : f32[T,4]
        return %y
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4]) {
        %y = matmul_epilogue(%x, %w, %b) {transposeB=false, expr="mul(add(acc, $0), tanh(add(acc, $0)))"} : f32[T,4]  # fuse-elementwise
        return %y
      }`,
    );
    expect(out.notFused).toEqual([]);
    expect(nodeData(out.graph, "y").covers).toEqual(["mm", "h", "t", "y"]);
  });

  it("renumbers an existing map densely and passes a repeated operand once", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4]) -> (f32[T,4]) {
        %m = map(%y, %x, %x) {expr="add($2, mul($1, $0))"} : f32[T,4]
        return %m
      }`,
      `graph @g(%x: f32[T,4], %y: f32[T,4]) -> (f32[T,4]) {
        %m = map(%x, %y) {expr="add($0, mul($0, $1))"} : f32[T,4]  # fuse-elementwise
        return %m
      }`,
    );
  });

  it("keeps a scalar const as an operand when nothing else would be read", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[]) {
        %c = const() {value=3} : f32[]
        %e = exp(%c) : f32[]
        %y = mul(%x, %c) : f32[T,4]
        return %y, %e
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[]) {
        %c = const() {value=3} : f32[]
        %e = map(%c) {expr="exp($0)"} : f32[]  # fuse-elementwise
        %y = map(%x) {expr="mul($0, 3)"} : f32[T,4]  # fuse-elementwise
        return %y, %e
      }`,
    );
  });
});

describe("fuse-elementwise must not fire", () => {
  it("across a value with a second user: it stays a map of its own", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %w: f32[4,4]) -> (f32[T,4], f32[T,4]) {
        %s = add(%x, %y) : f32[T,4]
        %a = exp(%s) : f32[T,4]
        %m = matmul(%s, %w) {transposeB=false} : f32[T,4]
        return %a, %m
      }`,
      `graph @g(%x: f32[T,4], %y: f32[T,4], %w: f32[4,4]) -> (f32[T,4], f32[T,4]) {
        %s = map(%x, %y) {expr="add($0, $1)"} : f32[T,4]  # fuse-elementwise
        %a = map(%s) {expr="exp($0)"} : f32[T,4]  # fuse-elementwise
        %m = matmul(%s, %w) {transposeB=false} : f32[T,4]
        return %a, %m
      }`,
    );
    expect(out.notFused).toEqual([
      {
        pattern: "fuse-elementwise",
        at: "%a (<ir>:3)",
        reason: "a second user: %s is read by %a and %m, so it is materialized",
      },
    ]);
  });

  it("on maps that are already one normalized map each", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %y: f32[T,4]) -> (f32[T,4], f32[T,4]) {
        %s = map(%x, %y) {expr="add($0, $1)"} : f32[T,4]  # fuse-elementwise
        %a = map(%s) {expr="exp($0)"} : f32[T,4]  # fuse-elementwise
        return %a, %s
      }`,
    );
    expect(out.notFused.map((n) => n.reason)).toEqual([
      "a second user: %s is read by %a and the graph outputs, so it is materialized",
    ]);
  });

  it("into the non-expression operands of a matmul_epilogue or layer_norm_map", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %xa = relu(%x) : f32[T,4]
        %h = matmul_epilogue(%xa, %w, %b) {transposeB=false, expr="add(acc, $0)"} : f32[T,4]
        %ga = exp(%g) : f32[4]
        %ln = layer_norm_map(%ga, %b, %h) {eps=0.00001, expr="$0"} : f32[T,4]
        return %ln
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %g: f32[4], %b: f32[4]) -> (f32[T,4]) {
        %xa = map(%x) {expr="relu($0)"} : f32[T,4]  # fuse-elementwise
        %h = matmul_epilogue(%xa, %w, %b) {transposeB=false, expr="add(acc, $0)"} : f32[T,4]
        %ga = map(%g) {expr="exp($0)"} : f32[4]  # fuse-elementwise
        %ln = layer_norm_map(%ga, %b, %h) {eps=0.00001, expr="$0"} : f32[T,4]
        return %ln
      }`,
    );
  });
});

describe("fuse-elementwise bounds expression size", () => {
  it("stops where repeated squaring would exceed MAX_TERMS, and still settles", () => {
    // x_{i+1} = x_i · x_i: each value has one user, but written out the expression doubles
    const sq = Array.from({ length: 10 }, (_, i) => `%s${i + 1} = mul(%s${i}, %s${i}) : f32[T,4]`);
    const text = `graph @g(%s0: f32[T,4]) -> (f32[T,4]) {\n${sq.join("\n")}\nreturn %s10\n}`;
    const g = parseGraph(text);
    const out = checkPasses(MINE, g);
    const sizes = topoOrder(out)
      .map((k) => nodeData(out, k))
      .filter((n) => n.op === "map")
      .map((n) => (n.op === "map" ? exprSize(n.attrs.expr) : 0));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_TERMS);
    expect(sizes).toEqual([255, 3, 3, 3]); // s7 covers s1…s7; s8, s9, s10 stay single maps
    expect(pass.run(g).notFused.map((n) => n.reason)).toEqual(
      Array(3).fill(`the fused expression would exceed ${MAX_TERMS} terms`),
    );
  });
});

describe("fuse-elementwise on the reference models", () => {
  for (const [name, make] of MODELS) {
    it(`keeps ${name} equivalent and is idempotent, alone and after the other fusions`, () => {
      checkPasses([pass], make());
      checkPasses(MINE, make());
    });
    it(`keeps ${name} equivalent after the whole default pipeline`, () => {
      const g = make();
      expectEquivalent(runPipeline(g, DEFAULT_PIPELINE).graph, g, BINDINGS);
    });
  }

  it("makes each embedding one map over the gathers' outputs", () => {
    const g2 = runPipeline(gpt2Small(), DEFAULT_PIPELINE).graph;
    expect(nodeData(g2, "x")).toMatchObject({ op: "map", origin: "fuse-elementwise" });
    expect(printMap(g2, "x")).toBe(`map(%emb, %pos_emb) {expr="add($0, $1)"}`);
    const s2 = runPipeline(seq2seqSmall(), DEFAULT_PIPELINE).graph;
    for (const [x, emb, pe] of [
      ["x", "emb", "pe"],
      ["x_1", "emb_1", "pe_1"],
    ])
      expect(printMap(s2, x)).toBe(
        `map(%${emb}, %${pe}) {expr="add(mul($0, ${Math.sqrt(24)}), $1)"}`,
      );
  });
});

/** `map(%a, %b) {expr="…"}`, as the node prints (without its type). */
function printMap(g: Graph, key: string): string {
  const n = nodeData(g, key);
  const args = operands(g, key).map((k) => `%${k}`);
  return `${n.op}(${args.join(", ")})${n.op === "map" ? ` {expr="${formatExpr(n.attrs.expr)}"}` : ""}`;
}

describe("fuse-elementwise property", () => {
  it("keeps random graphs equivalent and is idempotent", () => {
    expectPropertyHolds([pass]);
  });
  it("and so do all three elementwise fusions in their pipeline order", () => {
    expectPropertyHolds(MINE);
  });
});
