import { describe, expect, it } from "vitest";
import { formatExpr } from "../../../compiler/ir/expr.ts";
import { nodeData } from "../../../compiler/ir/graph.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { MAX_TERMS, exprSize } from "../../../compiler/passes/expr-fusion.ts";
import { fuseMatmulEpilogue } from "../../../compiler/passes/fuse-matmul-epilogue.ts";
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
} from "./fusion-graphs.ts";

const pass = fuseMatmulEpilogue;

describe("fuse-matmul-epilogue fires", () => {
  it("takes a bias and the GELU after it (GPT-2's c_fc)", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,8], %b: f32[8]) -> (f32[T,8]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,8]
        %h = add(%mm, %b) : f32[T,8]
        %y = gelu_tanh(%h) : f32[T,8]
        return %y
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,8], %b: f32[8]) -> (f32[T,8]) {
        %y = matmul_epilogue(%x, %w, %b) {transposeB=false, expr="gelu_tanh(add(acc, $0))"} : f32[T,8]  # fuse-matmul-epilogue
        return %y
      }`,
    );
    expect(out.rewrites).toBe(1);
    expect(out.notFused).toEqual([]);
    expect(nodeData(out.graph, "y").covers).toEqual(["mm", "h", "y"]);
  });

  it("takes the bias and the residual add, accumulator first, though the sum is used twice", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %mm = matmul(%x, %w) {transposeB=true} : f32[T,4]
        %o = add(%mm, %b) : f32[T,4]
        %res = add(%x, %o) : f32[T,4]
        %n = tanh(%res) : f32[T,4]
        %m = neg(%res) : f32[T,4]
        return %n, %m
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %res = matmul_epilogue(%x, %w, %b, %x) {transposeB=true, expr="add(add(acc, $0), $1)"} : f32[T,4]  # fuse-matmul-epilogue
        %n = tanh(%res) : f32[T,4]
        %m = neg(%res) : f32[T,4]
        return %n, %m
      }`,
    );
    expect(out.notFused).toEqual([
      {
        pattern: "fuse-matmul-epilogue",
        at: "%mm (<ir>:2)",
        reason: "a second user: %res is read by %m and %n, so it is materialized",
      },
    ]);
  });

  it("keeps operand order where it matters, inlines scalar consts, passes a repeated extra once", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4]) {
        %c = const() {value=0.125} : f32[]
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,4]
        %s = sub(%b, %mm) : f32[T,4]
        %d = div(%s, %b) : f32[T,4]
        %e = mul(%c, %d) : f32[T,4]
        return %e
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4]) {
        %e = matmul_epilogue(%x, %w, %b) {transposeB=false, expr="mul(div(sub($0, acc), $0), 0.125)"} : f32[T,4]  # fuse-matmul-epilogue
        return %e
      }`,
    );
  });

  it("extends an existing epilogue, and reads maps and the matmul's own operand", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4], %z: f32[T,1]) -> (f32[T,4]) {
        %e = matmul_epilogue(%x, %w, %b) {transposeB=false, expr="add(acc, $0)"} : f32[T,4]
        %m = map(%z, %e, %x) {expr="mul($1, sub($0, $2))"} : f32[T,4]
        %r = relu(%m) : f32[T,4]
        return %r
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4], %z: f32[T,1]) -> (f32[T,4]) {
        %r = matmul_epilogue(%x, %w, %b, %z, %x) {transposeB=false, expr="relu(mul(add(acc, $0), sub($1, $2)))"} : f32[T,4]  # fuse-matmul-epilogue
        return %r
      }`,
    );
  });

  it("reads the accumulator twice when a user reads the chain in both slots", () => {
    expectRewrite(
      pass,
      `graph @g(%x: f32[3,T,4], %w: f32[4,4]) -> (f32[3,T,4]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[3,T,4]
        %sq = mul(%mm, %mm) : f32[3,T,4]
        return %sq
      }`,
      `graph @g(%x: f32[3,T,4], %w: f32[4,4]) -> (f32[3,T,4]) {
        %sq = matmul_epilogue(%x, %w) {transposeB=false, expr="mul(acc, acc)"} : f32[3,T,4]  # fuse-matmul-epilogue
        return %sq
      }`,
    );
  });

  it("stops below a value that is also a graph output", () => {
    const out = expectRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,4]
        %h = add(%mm, %b) : f32[T,4]
        %y = exp(%h) : f32[T,4]
        return %h, %y
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %h = matmul_epilogue(%x, %w, %b) {transposeB=false, expr="add(acc, $0)"} : f32[T,4]  # fuse-matmul-epilogue
        %y = exp(%h) : f32[T,4]
        return %h, %y
      }`,
    );
    expect(out.notFused.map((n) => n.reason)).toEqual([
      "a second user: %h is read by %y and the graph outputs, so it is materialized",
    ]);
  });
});

describe("fuse-matmul-epilogue must not fire", () => {
  it("when the raw matmul output has a second user", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %b: f32[4]) -> (f32[T,4], f32[T,4]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,4]
        %h = add(%mm, %b) : f32[T,4]
        %s = softmax(%mm) {axis=1} : f32[T,4]
        return %h, %s
      }`,
    );
    expect(out.notFused).toEqual([
      {
        pattern: "fuse-matmul-epilogue",
        at: "%mm (<ir>:2)",
        reason: "a second user: %mm is read by %h and %s, so it is materialized",
      },
    ]);
  });

  it("when the other operand would broadcast the output to a bigger shape", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4], %u: f32[2,1,4]) -> (f32[2,T,4]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,4]
        %h = add(%mm, %u) : f32[2,T,4]
        return %h
      }`,
    );
    expect(out.notFused.map((n) => n.reason)).toEqual([
      "%h would broadcast the output f32[T,4] to f32[2,T,4]",
    ]);
  });

  it("when the only user is not elementwise", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4]) -> (f32[T,4]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,4]
        %s = softmax(%mm) {axis=1} : f32[T,4]
        return %s
      }`,
    );
    expect(out.notFused.map((n) => n.reason)).toEqual([
      "its only user %s is a softmax, which is not elementwise",
    ]);
  });

  it("on a matmul that is the graph output, and says nothing", () => {
    const out = expectNoRewrite(
      pass,
      `graph @g(%x: f32[T,4], %w: f32[4,4]) -> (f32[T,4]) {
        %mm = matmul(%x, %w) {transposeB=false} : f32[T,4]
        return %mm
      }`,
    );
    expect(out.notFused).toEqual([]);
  });
});

describe("fuse-matmul-epilogue bounds expression size", () => {
  it("takes as much of a chain as fits in MAX_TERMS terms", () => {
    // s_{i+1} = s_i · s_i doubles the expression: acc·acc, (acc·acc)·(acc·acc), …
    const sq = Array.from({ length: 9 }, (_, i) => `%s${i + 1} = mul(%s${i}, %s${i}) : f32[T,4]`);
    const g = parseGraph(
      `graph @g(%x: f32[T,4], %w: f32[4,4]) -> (f32[T,4]) {
        %s0 = matmul(%x, %w) {transposeB=false} : f32[T,4]
        ${sq.join("\n")}
        return %s9
      }`,
    );
    const out = pass.run(g);
    const n = nodeData(out.graph, "s7");
    expect(n.op === "matmul_epilogue" && exprSize(n.attrs.expr)).toBe(255);
    expect(nodeData(out.graph, "s8").op).toBe("mul");
    expect(out.notFused.map((f) => f.reason)).toEqual([
      `the epilogue through %s9 would exceed ${MAX_TERMS} terms`,
    ]);
    checkPasses([pass], g);
  });
});

describe("fuse-matmul-epilogue on the reference models", () => {
  for (const [name, make] of MODELS) {
    it(`keeps ${name} equivalent and is idempotent`, () => {
      checkPasses([pass], make());
    });
    it(`keeps ${name} equivalent after the whole default pipeline`, () => {
      const g = make();
      expectEquivalent(runPipeline(g, DEFAULT_PIPELINE).graph, g, BINDINGS);
    });
  }

  it("gives each GPT-2 block its four epilogues after the default pipeline", () => {
    const { graph } = runPipeline(gpt2Small(), DEFAULT_PIPELINE);
    const exprs = graph.nodes
      .mapNodes((_k, n) => (n.op === "matmul_epilogue" ? formatExpr(n.attrs.expr) : ""))
      .filter((e) => e !== "")
      .sort();
    // per layer: c_attn + bias; attn c_proj and mlp c_proj + bias + residual; c_fc + bias + GELU
    expect(exprs).toEqual([
      "add(acc, $0)",
      "add(acc, $0)",
      "add(add(acc, $0), $1)",
      "add(add(acc, $0), $1)",
      "add(add(acc, $0), $1)",
      "add(add(acc, $0), $1)",
      "gelu_tanh(add(acc, $0))",
      "gelu_tanh(add(acc, $0))",
    ]);
  });
});

describe("fuse-matmul-epilogue property", () => {
  it("keeps random graphs equivalent and is idempotent", () => {
    expectPropertyHolds([pass]);
  });
});
