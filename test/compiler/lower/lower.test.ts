/** lower: which kernels, views, buffers and phases a graph becomes. */
import { describe, expect, it } from "vitest";
import { OP_NAMES, type OpName } from "../../../compiler/ir/ops.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { createSession } from "../../../compiler/lower/execute.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { printProgram } from "../../../compiler/lower/print.ts";
import { kernelsOf, type KernelFamily, type Program } from "../../../compiler/lower/program.ts";
import { formatSym } from "../../../compiler/lower/sym.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { randomFeeds } from "../../helpers/feeds.ts";
import { expectClose, nd, randn, run } from "../util.ts";
import { gpt2Graph, seq2seqGraph } from "./models.ts";

/** Every op of the op table, each used once (views and buffers included). */
const ZOO = `graph @zoo(%x: f32[T,6], %ids: i32[T], %m: f32[T]) -> (f32[T,6], f32[1,6], f32[T,1], f32[T,6], f32[T,T], f32[T,6], f32[T,4], f32[T,6]) {
  dim T <= 8 "the test's context"
  %w = param() {name="w"} : f32[6,6]
  %g = param() {name="g"} : f32[6]
  %b = param() {name="b"} : f32[6]
  %c = const() {value=0.5} : f32[]
  %a1 = add(%x, %c) : f32[T,6]
  %a2 = sub(%a1, %x) : f32[T,6]
  %a3 = mul(%a2, %x) : f32[T,6]
  %a4 = div(%a3, %c) : f32[T,6]
  %u1 = neg(%a4) : f32[T,6]
  %u2 = exp(%u1) : f32[T,6]
  %u3 = sqrt(%u2) : f32[T,6]
  %u4 = rsqrt(%u3) : f32[T,6]
  %u5 = tanh(%u4) : f32[T,6]
  %u6 = relu(%u5) : f32[T,6]
  %u7 = gelu(%u6) : f32[T,6]
  %u8 = gelu_tanh(%u7) : f32[T,6]
  %mm = matmul(%u8, %w) {transposeB=false} : f32[T,6]
  %r = reshape(%mm) {shape=[T,2,3]} : f32[T,2,3]
  %t = transpose(%r) {perm=[1,0,2]} : f32[2,T,3]
  %s = slice(%t) {axis=2, start=1, size=2} : f32[2,T,2]
  %sc = matmul(%s, %s) {transposeB=true} : f32[2,T,T]
  %cm = causal_mask(%sc) : f32[2,T,T]
  %mk = reshape(%m) {shape=[1,1,T]} : f32[1,1,T]
  %mf = masked_fill(%cm, %mk) {value=-inf} : f32[2,T,T]
  %sm = softmax(%mf) {axis=2} : f32[2,T,T]
  %ss = scale_softmax(%sc, %mk) {scale=0.3, causal=true} : f32[2,T,T]
  %d = reduce_sum(%sm) {axis=0} : f32[1,T,T]
  %d2 = reshape(%d) {shape=[T,T]} : f32[T,T]
  %e = reduce_mean(%ss) {axis=0} : f32[1,T,T]
  %e2 = reshape(%e) {shape=[T,T]} : f32[T,T]
  %sum = add(%d2, %e2) : f32[T,T]
  %ln = layer_norm(%mm, %g, %b) {eps=0.00001} : f32[T,6]
  %rs = reduce_sum(%ln) {axis=0} : f32[1,6]
  %rm = reduce_mean(%ln) {axis=1} : f32[T,1]
  %emb = gather(%w, %ids) : f32[T,6]
  %pos = range() {start=0, size=T} : i32[T]
  %pe = sinusoidal(%pos) {dim=4} : f32[T,4]
  %fm = map(%emb, %b) {expr="add($0, mul($1, 2))"} : f32[T,6]
  %me = matmul_epilogue(%fm, %w, %b) {transposeB=true, expr="relu(add(acc, $0))"} : f32[T,6]
  %lm = layer_norm_map(%g, %b, %me, %x) {eps=0.00001, expr="add($0, $1)"} : f32[T,6]
  %at = attention(%lm, %x, %x, %m) {heads=2, scale=0.4, causal=true} : f32[T,6]
  %cc = concat(%pe, %pe) {axis=1} : f32[T,8]
  %cs = slice(%cc) {axis=1, start=2, size=4} : f32[T,4]
  return %ln, %rs, %rm, %at, %sum, %u8, %cs, %x
}`;

const FAMILY_OF: { readonly [O in OpName]: KernelFamily | "buffer" | "view" } = {
  input: "buffer",
  param: "buffer",
  const: "map",
  range: "map",
  add: "map",
  sub: "map",
  mul: "map",
  div: "map",
  neg: "map",
  exp: "map",
  sqrt: "map",
  rsqrt: "map",
  tanh: "map",
  relu: "map",
  gelu: "map",
  gelu_tanh: "map",
  matmul: "matmul",
  transpose: "view",
  reshape: "view",
  slice: "view",
  gather: "gather",
  concat: "map",
  sinusoidal: "map",
  softmax: "row_reduction",
  causal_mask: "map",
  masked_fill: "map",
  layer_norm: "row_reduction",
  reduce_sum: "row_reduction",
  reduce_mean: "row_reduction",
  map: "map",
  matmul_epilogue: "matmul",
  layer_norm_map: "row_reduction",
  scale_softmax: "row_reduction",
  attention: "attention",
};

describe("every op", () => {
  const g = parseGraph(ZOO);
  const p = lower(g);

  it("lowers to its family (views and buffers make no kernel)", () => {
    const seen = new Set<string>();
    g.nodes.forEachNode((key, n) => {
      seen.add(n.op);
      const ks = p.kernels.filter((k) => k.node === key && k.body.kind !== "copy");
      const want = FAMILY_OF[n.op];
      if (want === "buffer" || want === "view") expect(ks, key).toEqual([]);
      else
        expect(
          ks.map((k) => [k.op, k.family]),
          key,
        ).toEqual([[n.op, want]]);
    });
    expect([...seen].sort()).toEqual([...OP_NAMES].sort());
  });

  it("computes what the reference interpreter does", () => {
    const inputs = {
      x: randn([5, 6], 1),
      ids: nd([5], [0, 5, 2, 2, 1]),
      m: nd([5], [0, 1, 0, 0, 1]),
    };
    const params = { w: randn([6, 6], 2), g: randn([6], 3), b: randn([6], 4) };
    const got = createSession(p, (n) => params[n as keyof typeof params]).run(
      new Map(Object.entries(inputs)),
    );
    run(g, inputs, params).forEach((want, i) => expectClose(got[i], want, 1e-12));
  });

  it("copies an output that is a view or an input; keeps a tiling concat as a view", () => {
    const copies = p.kernels.filter((k) => k.body.kind === "copy").map((k) => k.node);
    expect(copies.sort()).toEqual(["cs", "x"]);
    expect(p.kernels.some((k) => k.node === "cc")).toBe(true); // [pe, pe] does not tile a buffer
    const tiled = lower(
      parseGraph(`graph @t(%x: f32[T,6]) -> (f32[T,6]) {
  %a = slice(%x) {axis=1, start=0, size=2} : f32[T,2]
  %b = slice(%x) {axis=1, start=2, size=4} : f32[T,4]
  %c = concat(%a, %b) {axis=1} : f32[T,6]
  %y = relu(%c) : f32[T,6]
  return %y
}`),
    );
    expect(tiled.kernels.map((k) => k.name)).toEqual(["k0_relu"]);
    expect(tiled.kernels[0].covers).toEqual(["y", "a", "b", "c"]);
  });

  it("keeps params, consts and state out of the temps", () => {
    const role = (node: string) => p.buffers.find((b) => b.node === node)!.role;
    expect([role("w"), role("c"), role("x"), role("ln")]).toEqual([
      "param",
      "const",
      "input",
      "output",
    ]);
    expect(kernelsOf(p, "load").map((k) => k.node)).toEqual(["c"]);
  });
});

describe("GPT-2", () => {
  it.each([
    ["no passes", []],
    ["the default pipeline", undefined],
  ] as const)("reads q, k and v in place in the merged projection (%s)", (_what, passes) => {
    const g = runPipeline(gpt2Graph(1), passes).graph;
    const p = lower(g);
    const qkv = p.buffers.find((b) => b.node === "qkv")!;
    const reads = p.kernels.flatMap((k) => k.inputs).filter((v) => v.buffer === qkv.id);
    expect(reads.map((v) => formatSym(v.offset)).sort()).toEqual(["0", "24", "48"]);
    // No kernel copies a third: the only copy in the unfused block merges the heads.
    const copies = p.kernels.filter((k) => k.body.kind === "copy");
    for (const k of copies) expect(k.covers.some((c) => /^[qkv]$/.test(c))).toBe(false);
    expect(copies.map((k) => k.node)).toEqual(passes ? ["merged"] : []);
  });

  it("has no source phase and one step input; positions are a step range", () => {
    const p = lower(gpt2Graph());
    expect(kernelsOf(p, "source")).toEqual([]);
    expect(p.inputs.map((id) => [p.buffers[id].name, p.buffers[id].phase])).toEqual([
      ["tokens", "step"],
    ]);
    expect(p.seqDim).toBe("T");
  });

  it("is deterministic: the same graph gives the same Program, and the same text", () => {
    const a = lower(runPipeline(gpt2Graph()).graph);
    const b = lower(runPipeline(gpt2Graph()).graph);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    expect(printProgram(b)).toBe(printProgram(a));
    expect(a.kernels.map((k) => k.name)).toEqual(
      a.kernels.map((k, i) => `k${i}_${k.name.split("_").slice(1).join("_")}`),
    );
  });
});

describe("seq2seq", () => {
  it("runs the encoder in the source phase and the decoder in the step phase", () => {
    const p = lower(seq2seqGraph(1));
    const phaseOf = (node: string) => p.kernels.find((k) => k.covers.includes(node))!.phase;
    expect(["memory", "k_mm", "v_2", "x", "qkv"].map(phaseOf)).toEqual(Array(5).fill("source"));
    expect(["q_mm", "x_1", "logits", "scores_4"].map(phaseOf)).toEqual(Array(4).fill("step"));
    const state = p.buffers.filter((b) => b.role === "state");
    expect(state.map((b) => [b.node, b.phase])).toEqual([
      ["k_2", "source"],
      ["v_2", "source"],
    ]);
  });

  it.each([
    ["no passes", []],
    ["the default pipeline", undefined],
  ] as const)("covers every node of the model with some kernel (%s)", (_what, passes) => {
    const g = seq2seqGraph();
    const p = lower(runPipeline(g, passes).graph);
    const covered = new Set(p.kernels.flatMap((k) => k.covers));
    const missing: string[] = [];
    g.nodes.forEachNode((key, n) => {
      if (n.op !== "input" && n.op !== "param" && n.op !== "const" && !covered.has(key))
        missing.push(key);
    });
    expect(missing).toEqual([]);
  });
});

describe("load phase", () => {
  it("computes weight transforms once, before any input", () => {
    const text = `graph @t(%x: f32[T,4]) -> (f32[T,6]) {
  %a = param() {name="a"} : f32[4,2]
  %b = param() {name="b"} : f32[4,4]
  %w = concat(%a, %b) {axis=1} : f32[4,6]
  %y = matmul(%x, %w) {transposeB=false} : f32[T,6]
  return %y
}`;
    const p: Program = lower(parseGraph(text));
    expect(p.kernels.map((k) => [k.name, k.phase])).toEqual([
      ["k0_concat", "load"],
      ["k1_matmul", "step"],
    ]);
    expect(p.buffers[p.kernels[0].output].role).toBe("const");
    let loads = 0;
    const feeds = randomFeeds(parseGraph(text), new Map([["T", 3]]));
    const s = createSession(p, feeds.param, {
      onKernel: (k) => (loads += k.phase === "load" ? 1 : 0),
    });
    s.run(feeds.inputs);
    s.run(feeds.inputs);
    expect(loads).toBe(1);
  });
});
