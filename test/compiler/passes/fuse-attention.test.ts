/** fuse-attention: mergeHeads(softmax(splitHeads(q)·splitHeads(k)ᵀ)·splitHeads(v)) ⇒ attention. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ModelBuilder, type Tensor } from "../../../compiler/dsl/builder.ts";
import {
  crossAttention,
  linear,
  multiHeadAttention,
  selfAttention,
} from "../../../compiler/dsl/layers.ts";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import { nodeData, type Graph } from "../../../compiler/ir/graph.ts";
import { ndarray } from "../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import { fuseAttention } from "../../../compiler/passes/fuse-attention.ts";
import { fuseQkv } from "../../../compiler/passes/fuse-qkv.ts";
import { fuseScaleSoftmax } from "../../../compiler/passes/fuse-scale-softmax.ts";
import type { Pass } from "../../../compiler/passes/pass.ts";
import { DEFAULT_PIPELINE, runPipeline } from "../../../compiler/passes/pipeline.ts";
import classifier from "../../../examples/classifier/model.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";
import { build, expectClose, run } from "../util.ts";

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
const CLASSIFIER_SMALL = { vocab_size: 50, max_len: 16, width: 16, heads: 2, layers: 2, ffn: 32 };
const BINDINGS = new Map([
  ["T", 5],
  ["S", 7],
]);

const MINE: readonly Pass[] = [fuseQkv, fuseScaleSoftmax, fuseAttention];

/** Runs the pass on IR text and checks the printed result against IR text. */
function expectRewrite(input: string, output: string, rewrites = 1): Graph {
  const g = parseGraph(input);
  const r = fuseAttention.run(g);
  expect(printGraph(r.graph)).toBe(printGraph(parseGraph(output)));
  expect(r.rewrites).toBe(rewrites);
  expect(r.notFused).toEqual([]);
  expectEquivalent(r.graph, g, BINDINGS);
  expectIdempotent(r.graph);
  return r.graph;
}

function expectIdempotent(g: Graph): void {
  const again = fuseAttention.run(g);
  expect(again.rewrites).toBe(0);
  expect(printGraph(again.graph)).toBe(printGraph(g));
}

/** Runs the pass where it must not fire: the graph is unchanged; returns the reasons. */
function expectRefused(input: string): string[] {
  const g = parseGraph(input);
  const r = fuseAttention.run(g);
  expect(r.rewrites).toBe(0);
  expect(printGraph(r.graph)).toBe(printGraph(g));
  return r.notFused.map((n) => `${n.at}: ${n.reason}`);
}

/** The attention core on split heads, with `probs` lines in between (IR text). */
const core = (
  sig: string,
  probs: string,
  opts: { ret?: string; out?: string; q?: string; k?: string } = {},
) => `graph @t(${sig}) -> (${opts.out ?? "f32[T,8]"}) {
  %rq = reshape(%q) {shape=${opts.q ?? "[T,2,4]"}} : f32${opts.q ?? "[T,2,4]"}
  %hq = transpose(%rq) {perm=[1,0,2]} : f32[2,T,4]
  %rk = reshape(%k) {shape=${opts.k ?? "[S,2,4]"}} : f32${opts.k ?? "[S,2,4]"}
  %hk = transpose(%rk) {perm=[1,0,2]} : f32${opts.k ? "[1,S,4]" : "[2,S,4]"}
  %rv = reshape(%v) {shape=${opts.k ?? "[S,2,4]"}} : f32${opts.k ?? "[S,2,4]"}
  %hv = transpose(%rv) {perm=[1,0,2]} : f32${opts.k ? "[1,S,4]" : "[2,S,4]"}
  %s = matmul(%hq, %hk) {transposeB=true} : f32[2,T,S]
  ${probs}
  %o = matmul(%p, %hv) {transposeB=false} : f32[2,T,4]
  %to = transpose(%o) {perm=[1,0,2]} : f32[T,2,4]
  %y = reshape(%to) {shape=[T,8]} : f32[T,8]
  return ${opts.ret ?? "%y"}
}`;

const QKV = "%q: f32[T,8], %k: f32[S,8], %v: f32[S,8]";

describe("fuse-attention fires", () => {
  it("on scale_softmax with a [1,1,S] key mask reshaped from [S]: the fused op takes the [S]", () => {
    const g = expectRewrite(
      core(
        `${QKV}, %pad: i32[S]`,
        `%pm = reshape(%pad) {shape=[1,1,S]} : i32[1,1,S]
         %p = scale_softmax(%s, %pm) {scale=0.5, causal=true} : f32[2,T,S]`,
      ),
      `graph @t(${QKV}, %pad: i32[S]) -> (f32[T,8]) {
        %y = attention(%q, %k, %v, %pad) {heads=2, scale=0.5, causal=true} : f32[T,8]  # fuse-attention
        return %y
      }`,
    );
    const y = nodeData(g, "y");
    expect(y.origin).toBe("fuse-attention");
    expect(y.loc).toBe("<ir>:13"); // the merge reshape's line
    expect([...(y.covers ?? [])].sort()).toEqual(
      ["rq", "hq", "rk", "hk", "rv", "hv", "s", "pm", "p", "o", "to", "y"].sort(),
    );
  });

  it("on the unfused chain (mul, causal_mask, masked_fill −∞, softmax) too", () => {
    const g = expectRewrite(
      core(
        `${QKV}, %pad: f32[S]`,
        `%c = const() {value=0.5} : f32[]
         %m = mul(%s, %c) : f32[2,T,S]
         %cm = causal_mask(%m) : f32[2,T,S]
         %pm = reshape(%pad) {shape=[1,1,S]} : f32[1,1,S]
         %f = masked_fill(%cm, %pm) {value=-inf} : f32[2,T,S]
         %p = softmax(%f) {axis=2} : f32[2,T,S]`,
      ),
      `graph @t(${QKV}, %pad: f32[S]) -> (f32[T,8]) {
        %y = attention(%q, %k, %v, %pad) {heads=2, scale=0.5, causal=true} : f32[T,8]  # fuse-attention
        return %y
      }`,
    );
    // the chain is covered; the scale constant became an attribute and is simply gone
    expect(nodeData(g, "y").covers).toEqual(expect.arrayContaining(["m", "cm", "pm", "f", "p"]));
    expect(g.nodes.hasNode("c")).toBe(false);
  });

  it("on a bare softmax (scale 1, no mask), and with a [S] mask used as it is", () => {
    expectRewrite(
      core(QKV, `%p = softmax(%s) {axis=2} : f32[2,T,S]`),
      `graph @t(${QKV}) -> (f32[T,8]) {
        %y = attention(%q, %k, %v) {heads=2, scale=1, causal=false} : f32[T,8]  # fuse-attention
        return %y
      }`,
    );
    expectRewrite(
      core(
        `${QKV}, %pad: i32[S]`,
        `%p = scale_softmax(%s, %pad) {scale=2, causal=false} : f32[2,T,S]`,
      ),
      `graph @t(${QKV}, %pad: i32[S]) -> (f32[T,8]) {
        %y = attention(%q, %k, %v, %pad) {heads=2, scale=2, causal=false} : f32[T,8]  # fuse-attention
        return %y
      }`,
    );
  });

  it("a [1,S] mask that is not a reshape gets one; a mask reshape with another user stays", () => {
    expectRewrite(
      core(
        `${QKV}, %pad: i32[1,S]`,
        `%p = scale_softmax(%s, %pad) {scale=1, causal=false} : f32[2,T,S]`,
      ),
      `graph @t(${QKV}, %pad: i32[1,S]) -> (f32[T,8]) {
        %key_mask = reshape(%pad) {shape=[S]} : i32[S]  # fuse-attention
        %y = attention(%q, %k, %v, %key_mask) {heads=2, scale=1, causal=false} : f32[T,8]  # fuse-attention
        return %y
      }`,
    );
    const g = expectRewrite(
      core(
        `${QKV}, %pad: f32[S]`,
        `%pm = reshape(%pad) {shape=[1,1,S]} : f32[1,1,S]
         %p = scale_softmax(%s, %pm) {scale=1, causal=false} : f32[2,T,S]`,
        { ret: "%y, %pm", out: "f32[T,8], f32[1,1,S]" },
      ),
      `graph @t(${QKV}, %pad: f32[S]) -> (f32[T,8], f32[1,1,S]) {
        %pm = reshape(%pad) {shape=[1,1,S]} : f32[1,1,S]
        %y = attention(%q, %k, %v, %pad) {heads=2, scale=1, causal=false} : f32[T,8]  # fuse-attention
        return %y, %pm
      }`,
    );
    expect(nodeData(g, "y").covers).not.toContain("pm");
  });

  it("on DSL self- and cross-attention with key padding (q, k, v slices of projections)", () => {
    const g = build((m: ModelBuilder) => {
      const x = m.input("x", "f32", ["T", 8]);
      const mem = m.input("memory", "f32", ["S", 8]);
      const attn = (name: string, layout: "in_out" | "out_in") => ({
        qkv: {
          weight: m.param(`${name}.w`, layout === "in_out" ? [8, 24] : [24, 8]),
          bias: m.param(`${name}.b`, [24]),
          layout,
        },
        out: { weight: m.param(`${name}.o`, [8, 8]), layout },
        heads: 2,
      });
      const h = selfAttention(x, attn("self", "in_out"), {
        causal: true,
        keyPadding: m.input("pad", "i32", ["T"]),
      });
      return crossAttention(h, mem, attn("cross", "out_in"), {
        keyPadding: m.input("mem_pad", "i32", ["S"]),
      });
    });
    const r = runPipeline(g, MINE);
    const attention = r.graph.nodes.filterNodes((_k, n) => n.op === "attention");
    expect(attention.length).toBe(2);
    expect(attention.map((k) => nodeData(r.graph, k).attrs)).toEqual([
      { heads: 2, scale: 0.5, causal: true },
      { heads: 2, scale: 0.5, causal: false },
    ]);
    expect(r.notFused).toEqual([]);
    expectEquivalent(r.graph, g, BINDINGS);
  });
});

describe("fuse-attention does not fire", () => {
  const probs = `%p = scale_softmax(%s) {scale=0.5, causal=true} : f32[2,T,S]`;

  it("when the probabilities have a second user", () => {
    expect(expectRefused(core(QKV, probs, { ret: "%y, %p", out: "f32[T,8], f32[2,T,S]" }))).toEqual(
      ["%p (<ir>:9): the probabilities %p (<ir>:9) are used other than by one matmul with v"],
    );
  });

  it("when the scores or a head split have another user", () => {
    expect(expectRefused(core(QKV, probs, { ret: "%y, %s", out: "f32[T,8], f32[2,T,S]" }))).toEqual(
      ["%p (<ir>:9): %s (<ir>:8) has a user outside the attention pattern"],
    );
    expect(
      expectRefused(core(QKV, probs, { ret: "%y, %hk", out: "f32[T,8], f32[2,S,4]" })),
    ).toEqual(["%p (<ir>:9): %hk (<ir>:5) has a user outside the attention pattern"]);
  });

  it("when a head layout is not transpose [1,0,2] of a reshape [T,H,D]", () => {
    // heads interleaved: reshape to [T,D,H], then transpose [2,0,1]
    const interleaved = core(QKV, probs).replace(
      "%rq = reshape(%q) {shape=[T,2,4]} : f32[T,2,4]\n  %hq = transpose(%rq) {perm=[1,0,2]}",
      "%rq = reshape(%q) {shape=[T,4,2]} : f32[T,4,2]\n  %hq = transpose(%rq) {perm=[2,0,1]}",
    );
    expect(expectRefused(interleaved)).toEqual([
      "%p (<ir>:9): the query heads %hq (<ir>:3) are not transpose(·, [1,0,2])",
    ]);
    // heads made without a reshape
    const noReshape = `graph @t(%q: f32[T,2,4], %k: f32[S,8], %v: f32[S,8]) -> (f32[T,8]) {
      %hq = transpose(%q) {perm=[1,0,2]} : f32[2,T,4]
      %rk = reshape(%k) {shape=[S,2,4]} : f32[S,2,4]
      %hk = transpose(%rk) {perm=[1,0,2]} : f32[2,S,4]
      %rv = reshape(%v) {shape=[S,2,4]} : f32[S,2,4]
      %hv = transpose(%rv) {perm=[1,0,2]} : f32[2,S,4]
      %s = matmul(%hq, %hk) {transposeB=true} : f32[2,T,S]
      %p = softmax(%s) {axis=2} : f32[2,T,S]
      %o = matmul(%p, %hv) {transposeB=false} : f32[2,T,4]
      %to = transpose(%o) {perm=[1,0,2]} : f32[T,2,4]
      %y = reshape(%to) {shape=[T,8]} : f32[T,8]
      return %y
    }`;
    expect(expectRefused(noReshape)).toEqual([
      "%p (<ir>:8): the query heads %hq (<ir>:2) are not a reshape of a [T,C] value",
    ]);
    // the reshape does not split the last axis: [4,8] → [2,4,4] is not [T,H,D]
    const bad = `graph @t(%q: f32[4,8], %k: f32[2,16], %v: f32[2,16]) -> (f32[2,16]) {
      %rq = reshape(%q) {shape=[2,4,4]} : f32[2,4,4]
      %hq = transpose(%rq) {perm=[1,0,2]} : f32[4,2,4]
      %rk = reshape(%k) {shape=[2,4,4]} : f32[2,4,4]
      %hk = transpose(%rk) {perm=[1,0,2]} : f32[4,2,4]
      %rv = reshape(%v) {shape=[2,4,4]} : f32[2,4,4]
      %hv = transpose(%rv) {perm=[1,0,2]} : f32[4,2,4]
      %s = matmul(%hq, %hk) {transposeB=true} : f32[4,2,2]
      %p = softmax(%s) {axis=2} : f32[4,2,2]
      %o = matmul(%p, %hv) {transposeB=false} : f32[4,2,4]
      %to = transpose(%o) {perm=[1,0,2]} : f32[2,4,4]
      %y = reshape(%to) {shape=[2,16]} : f32[2,16]
      return %y
    }`;
    expect(expectRefused(bad)).toEqual([
      "%p (<ir>:9): the query heads %rq (<ir>:2) reshape [4,8] to [2,4,4], not [T,H,D] with H·D = C",
    ]);
  });

  it("when q, k and v heads disagree (one shared k/v head broadcast over two query heads)", () => {
    const mqa = core("%q: f32[T,8], %k: f32[S,4], %v: f32[S,4]", probs, { k: "[S,1,4]" });
    expect(expectRefused(mqa)).toEqual([
      "%p (<ir>:9): the heads disagree: q [T,2,4], k [S,1,4], v [S,1,4]",
    ]);
  });

  it("when the output is not merged back, or the mask varies over queries", () => {
    const unmerged = core(QKV, probs, { ret: "%o", out: "f32[2,T,4]" });
    expect(expectRefused(unmerged.replace(/\n\s*%to = .*\n\s*%y = .*/, ""))).toEqual([
      "%p (<ir>:9): the attention output %o (<ir>:10) is not merged by a transpose [1,0,2]",
    ]);
    const perQuery = core(
      `${QKV}, %pad: i32[T,S]`,
      `%p = scale_softmax(%s, %pad) {scale=1, causal=false} : f32[2,T,S]`,
    );
    expect(expectRefused(perQuery)).toEqual([
      "%p (<ir>:9): the mask %pad [T,S] is not one [S] key mask for every head and query",
    ]);
  });

  it("on a softmax that is not attention, silently", () => {
    expect(
      expectRefused(`graph @t(%x: f32[T,4]) -> (f32[T,4]) {
        %p = softmax(%x) {axis=1} : f32[T,4]
        return %p
      }`),
    ).toEqual([]);
  });
});

/** Values whose type looks like attention scores: rank 3 with two symbolic trailing dims. */
const scoresLike = (g: Graph): string[] =>
  g.nodes.filterNodes((_k, n) => {
    const s = n.type.shape;
    return s.length === 3 && typeof s[1] === "string" && typeof s[2] === "string";
  });

describe("fuse-attention on the reference models", () => {
  const models: [string, () => Graph, number][] = [
    ["gpt2", () => buildGraph(gpt2, GPT2_SMALL), 2],
    ["seq2seq", () => buildGraph(seq2seq, SEQ2SEQ_SMALL), 6],
    ["classifier", () => buildGraph(classifier, CLASSIFIER_SMALL), 2],
  ];
  for (const [name, make, layers] of models)
    it(`${name}: every attention fuses, covers every scores-shaped value, same numbers`, () => {
      const g = make();
      const r = runPipeline(g, MINE);
      const out = r.graph;
      expect(r.notFused).toEqual([]);
      const attention = out.nodes.filterNodes((_k, n) => n.op === "attention");
      expect(attention.length).toBe(layers);
      expect(out.nodes.filterNodes((_k, n) => n.op === "scale_softmax")).toEqual([]);
      expect(scoresLike(out)).toEqual([]);
      if (name !== "classifier")
        expect(out.nodes.filterNodes((_k, n) => n.op === "softmax")).toEqual([]);
      // each fused node covers 2 matmuls and 1 softmax; together they cover every [H,Tq,Tk]
      const covered = new Set(attention.flatMap((k) => nodeData(out, k).covers ?? []));
      for (const k of attention) {
        const ops = (nodeData(out, k).covers ?? []).map((c) => nodeData(g, c).op);
        expect(ops.filter((o) => o === "matmul").length).toBe(2);
        expect(ops.filter((o) => o === "softmax").length).toBe(1);
      }
      for (const k of scoresLike(g)) expect(covered.has(k), k).toBe(true);
      expectEquivalent(out, g, BINDINGS);
      expectIdempotent(out);
      // fuse-attention alone, on the unfused softmax chains, does the same
      const alone = fuseAttention.run(g);
      expect(alone.rewrites).toBe(layers);
      expect(scoresLike(alone.graph)).toEqual([]);
      expectEquivalent(alone.graph, g, BINDINGS);
    });

  for (const [name, make] of models)
    it(`${name}: the whole default pipeline computes the same numbers, no scores left`, () => {
      const g = make();
      const out = runPipeline(g, DEFAULT_PIPELINE).graph;
      expectEquivalent(out, g, BINDINGS);
      expect(scoresLike(out)).toEqual([]);
      expect(out.nodes.filterNodes((_k, n) => n.op === "scale_softmax")).toEqual([]);
    });
});

describe("attention edge cases, fused against unfused", () => {
  // One head of width 1 (scale 1): scores are q_i · k_j, so the test picks them directly.
  const graph = build((m: ModelBuilder) => {
    const q = m.input("q", "f32", ["T", 1]);
    const k = m.input("k", "f32", ["S", 1]);
    const v = m.input("v", "f32", ["S", 1]);
    return multiHeadAttention(q, k, v, 1, {
      causal: true,
      keyPadding: m.input("pad", "i32", ["S"]),
    });
  });
  const fused = runPipeline(graph, MINE).graph;
  const both = (q: number[], k: number[], pad: number[]) => {
    const v = k.map((_, j) => j + 1);
    const inputs = {
      q: ndarray([q.length, 1], q),
      k: ndarray([k.length, 1], k),
      v: ndarray([k.length, 1], v),
      pad: ndarray([k.length], pad),
    };
    const [want] = run(graph, inputs);
    const [got] = run(fused, inputs);
    expectClose(got, want, 1e-15);
    expect(got.data.every(Number.isFinite)).toBe(true);
    return got;
  };
  /** Σ softmax(scores)_j · v_j with v_j = j + 1 over the visible keys. */
  const attend = (scores: number[], keys: number[]) => {
    const m = Math.max(...scores);
    const e = scores.map((s) => Math.exp(s - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.reduce((acc, w, i) => acc + (w / z) * (keys[i] + 1), 0);
  };

  it("is one attention node", () => {
    expect(fused.nodes.filterNodes((_k, n) => n.op !== "input")).toEqual(fused.outputs);
    expect(nodeData(fused, fused.outputs[0]).op).toBe("attention");
  });

  it("rows of very large scores (10000…10003) do not overflow", () => {
    // Tq = 3, Tk = 4, causal bottom-right aligned: query i sees keys 0..i+1.
    const r = both([1, 1, 1], [10000, 10001, 10002, 10003], [0, 0, 0, 0]);
    expectClose(
      r,
      [
        attend([10000, 10001], [0, 1]),
        attend([10000, 10001, 10002], [0, 1, 2]),
        attend([10000, 10001, 10002, 10003], [0, 1, 2, 3]),
      ],
      1e-14,
    );
  });

  it("a query with every key hidden gives zeros, never NaN", () => {
    expectClose(both([1, 1, 1], [1, 2, 3, 4], [1, 1, 1, 1]), [0, 0, 0]);
    // keys 0 and 1 padded: query 0 (sees keys 0..1) sees nothing
    expectClose(both([1, 1, 1], [1, 2, 3, 4], [1, 1, 0, 0]), [0, 3, attend([3, 4], [2, 3])]);
  });

  it("NaN, ∞ or 1e10 scores in hidden positions do not leak", () => {
    // Tq = Tk = 4. key 1 padded (its scores NaN or ∞); key 3 causal-hidden from queries 0..2
    // (its scores 1e10); query 3 has q = 0, so it sees scores of 0 (and the padded NaN).
    expectClose(both([1, 1, 1, 0], [1, NaN, 2, 1e10], [0, 1, 0, 0]), [
      1,
      1,
      attend([1, 2], [0, 2]),
      attend([0, 0, 0], [0, 2, 3]),
    ]);
    expectClose(both([1, 1, 1, 1], [1, Infinity, 2, 3], [0, 1, 0, 0]), [
      1,
      1,
      attend([1, 2], [0, 2]),
      attend([1, 2, 3], [0, 2, 3]),
    ]);
  });
});

describe("fuse-attention on random attention layers", () => {
  it("fuses each into one attention node with the same numbers", () => {
    const layer = fc.record({
      heads: fc.integer({ min: 1, max: 3 }),
      d: fc.constantFrom(1, 2, 4),
      causal: fc.boolean(),
      pad: fc.constantFrom("none", "i32", "f32"),
      cross: fc.boolean(),
      separate: fc.boolean(),
      layout: fc.constantFrom("in_out" as const, "out_in" as const),
    });
    fc.assert(
      fc.property(layer, (l) => {
        const c = l.heads * l.d;
        const g = build((m: ModelBuilder) => {
          const x = m.input("x", "f32", ["T", c]);
          const mem = l.cross ? m.input("memory", "f32", ["S", c]) : x;
          const tk = l.cross ? "S" : "T";
          const w = (n: string, cols: number) =>
            m.param(n, l.layout === "in_out" ? [c, cols] : [cols, c]);
          const proj = (from: Tensor, n: string) =>
            linear(from, {
              weight: w(`${n}.w`, c),
              bias: m.param(`${n}.b`, [c]),
              layout: l.layout,
            });
          const pad = l.pad === "none" ? undefined : m.input("pad", l.pad, [tk]);
          const mask = { causal: l.causal, ...(pad ? { keyPadding: pad } : {}) };
          if (!l.separate && !l.cross)
            return selfAttention(
              x,
              {
                qkv: { weight: w("qkv.w", 3 * c), layout: l.layout },
                out: { weight: w("o", c), layout: l.layout },
                heads: l.heads,
              },
              mask,
            );
          return multiHeadAttention(proj(x, "q"), proj(mem, "k"), proj(mem, "v"), l.heads, mask);
        });
        const r = runPipeline(g, MINE);
        expect(r.notFused).toEqual([]);
        expect(r.graph.nodes.filterNodes((_k, n) => n.op === "attention").length).toBe(1);
        expect(scoresLike(r.graph)).toEqual([]);
        expect(r.graph.nodes.filterNodes((_k, n) => n.op === "matmul").length).toBe(
          l.separate || l.cross ? (l.cross ? 2 : 1) : 2,
        );
        expectEquivalent(r.graph, g, BINDINGS);
        expectIdempotent(r.graph);
      }),
      { numRuns: 60, seed: 7 },
    );
  });
});
