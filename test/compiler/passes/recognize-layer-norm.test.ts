import { describe, expect, it } from "vitest";
import * as p from "../../../compiler/dsl/primitives.ts";
import { nodeData, type Graph } from "../../../compiler/ir/graph.ts";
import { cse } from "../../../compiler/passes/cse.ts";
import { foldConstants } from "../../../compiler/passes/fold-constants.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { simplify } from "../../../compiler/passes/simplify.ts";
import { recognizeLayerNorm } from "../../../compiler/passes/recognize-layer-norm.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";
import { build } from "../util.ts";
import {
  BINDINGS,
  REFERENCE_MODELS,
  checkPass,
  expectNoRewrite,
  expectPropertyHolds,
  expectRewrite,
  handLayerNorm,
  randomGraph,
  steps,
} from "./kit.ts";
import fc from "fast-check";

const ops = (g: Graph): string[] => g.nodes.mapNodes((_k, n) => n.op).sort();

const HEAD = `graph @g(%x: f32[T,8], %w: f32[8], %b: f32[8]) -> (f32[T,8]) {`;

/** The hand-written layer norm over x [T,8], with lines that tests swap out. */
function handIR(opts: { n?: string; eps?: string; extra?: string; ret?: string } = {}): string {
  return `${HEAD}
    %mean = reduce_mean(%x) {axis=1} : f32[T,1]
    %d = sub(%x, %mean) : f32[T,8]
    %sq = mul(%d, %d) : f32[T,8]
    %var = reduce_mean(%sq) {axis=1} : f32[T,1]
    ${opts.eps ?? "%eps = const() {value=0.00001} : f32[]"}
    %ve = add(%var, %eps) : f32[T,1]
    ${
      opts.n ??
      `%s = sqrt(%ve) : f32[T,1]
    %n = div(%d, %s) : f32[T,8]`
    }
    %g = mul(%n, %w) : f32[T,8]
    %y = add(%g, %b) : f32[T,8]
    ${opts.extra ?? ""}
    return ${opts.ret ?? "%y"}
  }`;
}

const FUSED = `${HEAD}
    %y = layer_norm(%x, %w, %b) {eps=0.00001} : f32[T,8]  # recognize-layer-norm
    return %y
  }`;

describe("recognize-layer-norm fires", () => {
  it("on mean, sub, mul, mean, add eps, sqrt, div, mul γ, add β", () => {
    const out = expectRewrite(recognizeLayerNorm, handIR(), FUSED);
    expect(out.rewrites).toBe(1);
    expect(out.notFused).toEqual([]);
    expect([...(nodeData(out.graph, "y").covers ?? [])].sort()).toEqual([
      "d",
      "eps",
      "g",
      "mean",
      "n",
      "s",
      "sq",
      "var",
      "ve",
      "y",
    ]);
    checkPass(recognizeLayerNorm, parseHand());
  });

  it("with rsqrt and mul instead of sqrt and div, either operand order", () => {
    for (const n of [
      `%s = rsqrt(%ve) : f32[T,1]
    %n = mul(%d, %s) : f32[T,8]`,
      `%s = rsqrt(%ve) : f32[T,1]
    %n = mul(%s, %d) : f32[T,8]`,
    ])
      expectRewrite(recognizeLayerNorm, handIR({ n }), FUSED);
  });

  it("with commuted add(eps, var), mul(γ, n), add(β, …)", () => {
    const text = handIR()
      .replace("add(%var, %eps)", "add(%eps, %var)")
      .replace("mul(%n, %w)", "mul(%w, %n)")
      .replace("add(%g, %b)", "add(%b, %g)");
    expectRewrite(recognizeLayerNorm, text, FUSED);
  });

  it("on the DSL's primitives (mean, sub, mul, add, div, sqrt, rsqrt), staying equivalent", () => {
    for (const variant of [0, 1]) {
      const g = build((m) => {
        const x = m.input("x", "f32", ["T", 6]);
        const h = p.relu(x);
        const y = handLayerNorm(
          h,
          m.param("ln.weight", [6]),
          m.param("ln.bias", [6]),
          1e-5,
          variant,
        );
        return p.tanh(y);
      });
      const out = checkPass(recognizeLayerNorm, g);
      expect(out.rewrites).toBe(1);
      expect(ops(out.graph)).toEqual(["input", "layer_norm", "param", "param", "relu", "tanh"]);
    }
  });

  it("on every hand-written norm of a residual stack", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", ["T", 24]);
      let h = x;
      for (let i = 0; i < 3; i++) {
        const ln = handLayerNorm(
          h,
          m.param(`ln${i}.weight`, [24]),
          m.param(`ln${i}.bias`, [24]),
          1e-5,
          i,
        );
        h = p.add(h, p.matmul(ln, m.param(`w${i}`, [24, 24])));
      }
      return h;
    });
    const out = checkPass(recognizeLayerNorm, g);
    expect(out.rewrites).toBe(3);
    expect(ops(out.graph).filter((o) => o === "layer_norm")).toHaveLength(3);
    expect(ops(out.graph)).not.toContain("reduce_mean");
  });

  it("after cse, when d = x − mean is spelled twice", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", ["T", 4]);
      const mu = p.mean(x, -1);
      const v = p.mean(p.mul(p.sub(x, mu), p.sub(x, mu)), -1);
      const n = p.div(p.sub(x, mu), p.sqrt(p.add(v, 1e-6)));
      return p.add(p.mul(n, m.param("g", [4])), m.param("b", [4]));
    });
    expect(recognizeLayerNorm.run(g).rewrites).toBe(0);
    const merged = cse.run(g).graph;
    const out = checkPass(recognizeLayerNorm, merged);
    expect(out.rewrites).toBe(1);
    expectEquivalent(out.graph, g, BINDINGS);
  });
});

function parseHand(): Graph {
  return build((m) => {
    const x = m.input("x", "f32", ["T", 8]);
    return handLayerNorm(x, m.param("w", [8]), m.param("b", [8]), 1e-5);
  });
}

describe("recognize-layer-norm must not fire", () => {
  const refused = (text: string): string => {
    const out = expectNoRewrite(recognizeLayerNorm, text);
    expect(out.notFused).toHaveLength(1);
    expect(out.notFused[0].pattern).toBe("recognize-layer-norm");
    expect(out.notFused[0].at).toMatch(/^%mean /);
    return out.notFused[0].reason;
  };

  it("when an intermediate has a second user", () => {
    const text = handIR({
      extra: "%z = add(%y, %var) : f32[T,8]",
      ret: "%z",
    });
    expect(refused(text)).toBe("%var has another user, %z");
  });

  it("when an intermediate is a graph output", () => {
    const text = handIR({ ret: "%y, %d" }).replace("-> (f32[T,8])", "-> (f32[T,8], f32[T,8])");
    expect(refused(text)).toBe("%d is also a graph output");
  });

  it("when the reduction is not over the last axis", () => {
    const text = `graph @g(%x: f32[8,T], %w: f32[T], %b: f32[T]) -> (f32[8,T]) {
      %mean = reduce_mean(%x) {axis=0} : f32[1,T]
      %d = sub(%x, %mean) : f32[8,T]
      %sq = mul(%d, %d) : f32[8,T]
      %var = reduce_mean(%sq) {axis=0} : f32[1,T]
      %eps = const() {value=0.00001} : f32[]
      %ve = add(%var, %eps) : f32[1,T]
      %s = sqrt(%ve) : f32[1,T]
      %n = div(%d, %s) : f32[8,T]
      %g = mul(%n, %w) : f32[8,T]
      %y = add(%g, %b) : f32[8,T]
      return %y
    }`;
    expect(refused(text)).toBe("normalizes over axis 0, not the last axis (1)");
  });

  it("when eps is not a constant, or not a positive scalar", () => {
    const notConst = handIR({ eps: "%eps = reduce_mean(%var) {axis=0} : f32[1,1]" });
    expect(refused(notConst)).toBe("eps %eps is not a constant");
    expect(refused(handIR({ eps: "%eps = const() {value=0} : f32[]" }))).toBe(
      "eps 0 is not positive",
    );
    const wide = handIR({ eps: "%eps = const() {value=0.00001} : f32[2,1,1]" })
      .replace("%ve = add(%var, %eps) : f32[T,1]", "%ve = add(%var, %eps) : f32[2,T,1]")
      .replace("%s = sqrt(%ve) : f32[T,1]", "%s = sqrt(%ve) : f32[2,T,1]")
      .replace("%n = div(%d, %s) : f32[T,8]", "%n = div(%d, %s) : f32[2,T,8]")
      .replace("%g = mul(%n, %w) : f32[T,8]", "%g = mul(%n, %w) : f32[2,T,8]")
      .replace("%y = add(%g, %b) : f32[T,8]", "%y = add(%g, %b) : f32[2,T,8]")
      .replace("-> (f32[T,8])", "-> (f32[2,T,8])");
    expect(refused(wide)).toBe("eps %eps (f32[2,1,1]) widens the variance's shape");
  });

  it("when γ or β has the wrong shape", () => {
    const gamma = handIR().replace("%w: f32[8]", "%w: f32[T,8]");
    expect(refused(gamma)).toBe("γ %w is f32[T,8], not f32[8] (x's last dim)");
    const beta = handIR().replace("%b: f32[8]", "%b: f32[1,8]");
    expect(refused(beta)).toBe("β %b is f32[1,8], not f32[8] (x's last dim)");
  });

  it("on the plain normalization without γ and β", () => {
    const text = `graph @g(%x: f32[T,8]) -> (f32[T,8]) {
      %mean = reduce_mean(%x) {axis=1} : f32[T,1]
      %d = sub(%x, %mean) : f32[T,8]
      %sq = mul(%d, %d) : f32[T,8]
      %var = reduce_mean(%sq) {axis=1} : f32[T,1]
      %eps = const() {value=0.00001} : f32[]
      %ve = add(%var, %eps) : f32[T,1]
      %s = rsqrt(%ve) : f32[T,1]
      %n = mul(%d, %s) : f32[T,8]
      return %n
    }`;
    expect(refused(text)).toBe("%n is a plain normalization, without γ and β");
  });

  it("on a mean that is not part of a normalization (no NotFused either)", () => {
    const out = expectNoRewrite(
      recognizeLayerNorm,
      `graph @g(%x: f32[T,8]) -> (f32[T,8]) {
        %mean = reduce_mean(%x) {axis=1} : f32[T,1]
        %d = sub(%x, %mean) : f32[T,8]
        return %d
      }`,
    );
    expect(out.notFused).toEqual([]);
  });
});

describe("recognize-layer-norm on the reference models", () => {
  for (const [name, make] of REFERENCE_MODELS)
    it(`keeps ${name} equivalent (its layer norms are already layer_norm ops)`, () => {
      const out = checkPass(recognizeLayerNorm, make());
      expect(out.rewrites).toBe(0);
      expect(out.notFused).toEqual([]);
    });
});

describe("recognize-layer-norm on random graphs", () => {
  it("stays equivalent and idempotent", () => expectPropertyHolds(recognizeLayerNorm));
});

describe("fold-constants, simplify, cse, recognize-layer-norm in pipeline order", () => {
  const FRONT = [foldConstants, simplify, cse, recognizeLayerNorm];

  it("turn a norm with a computed eps, d spelled thrice and no-op reshapes into one layer_norm", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", ["T", 4]);
      const h = p.reshape(p.reshape(p.mul(x, 1), ["T", 2, 2]), ["T", 4]);
      const mu = p.mean(h, -1);
      const v = p.mean(p.mul(p.sub(h, mu), p.sub(h, mu)), -1);
      const eps = p.div(m.scalar(1, x), m.scalar(1e5, x));
      const n = p.mul(p.sub(h, mu), p.rsqrt(p.add(v, eps)));
      return p.add(p.mul(n, m.param("g", [4])), m.param("b", [4]));
    });
    const out = runPipeline(g, FRONT);
    expect(out.stats.map((s) => [s.name, s.rewrites])).toEqual([
      ["fold-constants", 1],
      ["simplify", 2],
      ["cse", 2], // x − mean is spelled three times
      ["recognize-layer-norm", 1],
    ]);
    expect(ops(out.graph)).toEqual(["input", "layer_norm", "param", "param"]);
    expectEquivalent(out.graph, g, BINDINGS);
  });

  it("keep random graphs equivalent, and a second round changes nothing", () => {
    fc.assert(
      fc.property(steps, (seq) => {
        const g = randomGraph(seq);
        const once = runPipeline(g, FRONT).graph;
        expectEquivalent(once, g, new Map([["T", 3]]));
        const twice = runPipeline(once, FRONT);
        expect(twice.stats.every((s) => s.rewrites === 0)).toBe(true);
      }),
      { numRuns: 100, seed: 7 },
    );
  });
});
