/** DSL errors: a KilnError of kind "dsl" whose `where` is the user's file and the line of the
 *  offending call, and whose message names the op and the shapes.
 *
 *  Expected lines are found in the source text, not from a stack trace (that is what is being
 *  tested): the offending call carries a marker comment, and `lineOf` finds it. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ModelBuilder, type Tensor } from "../../../compiler/dsl/builder.ts";
import {
  multiHeadAttention,
  selfAttention,
  type AttentionParams,
} from "../../../compiler/dsl/layers.ts";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import * as p from "../../../compiler/dsl/primitives.ts";
import type { KilnError } from "../../../compiler/errors.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";
import { kilnError } from "../util.ts";

const HERE = "test/compiler/dsl/errors.test.ts";

/** The 1-based line of this file holding the marker comment `/*@name*\/`. */
function lineOf(name: string): number {
  const text = `/*@${name}*/`;
  const lines = readFileSync(new URL(import.meta.url), "utf8").split("\n");
  const hits = lines.flatMap((l, i) => (l.includes(text) ? [i + 1] : []));
  if (hits.length !== 1) throw new Error(`${text} appears ${hits.length} times in ${HERE}`);
  return hits[0];
}

/** The line of the `m.require(` call in a model file whose message contains `text`. */
function requireLine(file: string, text: string): number {
  const lines = readFileSync(new URL(`../../../${file}`, import.meta.url), "utf8").split("\n");
  const at = lines.findIndex((l) => l.includes(text));
  for (let i = at; i >= 0; i--) if (lines[i].includes("m.require(")) return i + 1;
  throw new Error(`no m.require( before ${JSON.stringify(text)} in ${file}`);
}

/** The DSL error f throws, checked to be located at the marked line of this file. */
function dslError(marker: string, f: () => unknown): KilnError {
  const e = kilnError(f, "dsl");
  expect(e.where).toBe(`${HERE}:${lineOf(marker)}`);
  expect(e.message).toBe(`${e.where}: ${e.detail}`);
  return e;
}

function model(): { m: ModelBuilder; x: Tensor } {
  const m = new ModelBuilder("t");
  return { m, x: m.input("x", "f32", ["T", 768]) };
}

describe("DSL errors name this file, the line, the op and the shapes", () => {
  it("matmul with mismatched inner dims", () => {
    const { m, x } = model();
    const w = m.param("w", [512, 768]);
    const w2 = m.param("w2", [768, 512]);
    const e = dslError("mm", () => p.matmul(/*@mm*/ x, w));
    expect(e.detail).toBe("matmul: [T,768] × [512,768]: inner dims differ (768 vs 512)");
    const t = dslError("mmT", () => p.matmul(/*@mmT*/ x, w2, { transposeB: true }));
    expect(t.detail).toBe("matmul: [T,768] × [768,512]ᵀ: inner dims differ (768 vs 512)");
  });

  it("a call spanning several lines is located at the line of the callee", () => {
    const { m, x } = model();
    // prettier-ignore
    const e = dslError("multi", () => p.matmul( /*@multi*/
      x,
      m.param("w", [512, 768]),
    ));
    expect(e.detail).toContain("inner dims differ");
  });

  it("dtype mismatches: f32 + i32, matmul of i32, gather with f32 ids", () => {
    const { m, x } = model();
    const ids = m.input("ids", "i32", ["T", 768]);
    const table = m.param("wte", [100, 768]);
    const fids = m.input("fids", "f32", ["T"]);
    const wi = m.param("wi", [768, 2], "i32");
    const add = dslError("addI", () => p.add(/*@addI*/ x, ids));
    expect(add.detail).toBe("add: dtypes differ: f32[T,768] and i32[T,768]");
    const mul = dslError("mulI", () => p.mul(/*@mulI*/ ids, x));
    expect(mul.detail).toBe("mul: dtypes differ: i32[T,768] and f32[T,768]");
    const gather = dslError("gatherF", () => p.gather(/*@gatherF*/ table, fids));
    expect(gather.detail).toBe("gather: ids must be i32, got f32[T]");
    const mm = dslError("mmI", () => p.matmul(/*@mmI*/ ids, wi));
    expect(mm.detail).toBe("matmul: [T,768] × [768,2]: needs a float dtype, got i32");
  });

  it("axis out of range: softmax axis 5 on rank 2", () => {
    const { x } = model();
    const sm = dslError("sm", () => p.softmax(/*@sm*/ x, 5));
    expect(sm.detail).toBe("softmax: axis 5 out of range for [T,768]");
    const neg = dslError("smNeg", () => p.softmax(/*@smNeg*/ x, -3));
    expect(neg.detail).toBe("softmax: axis -3 out of range for [T,768]");
    const sum = dslError("sum", () => p.sum(/*@sum*/ x, 2));
    expect(sum.detail).toBe("reduce_sum: axis 2 out of range for [T,768]");
    const slc = dslError("slc", () => p.slice(/*@slc*/ x, 2, 0, 1));
    expect(slc.detail).toBe("slice: axis 2 out of range for rank 2");
    const tr = dslError("tr", () => p.transpose(/*@tr*/ x, [0, 0]));
    expect(tr.detail).toBe("transpose: perm [0,0] is not a permutation of the 2 axes of [T,768]");
  });

  it("attention heads that do not divide the channels", () => {
    const { m } = model();
    const q = m.input("q", "f32", ["T", 24]);
    const e = dslError("heads", () => multiHeadAttention(/*@heads*/ q, q, q, 5));
    expect(e.detail).toBe("attention: 24 channels do not split into 5 heads");
    const a: AttentionParams = {
      qkv: { weight: m.param("c_attn", [24, 72]), layout: "in_out" },
      out: { weight: m.param("c_proj", [24, 24]), layout: "in_out" },
      heads: 7,
    };
    const self = dslError("self", () => selfAttention(/*@self*/ q, a, { causal: true }));
    expect(self.detail).toBe("attention: 24 channels do not split into 7 heads");
    const zero = dslError("zero", () => multiHeadAttention(/*@zero*/ q, q, q, 0));
    expect(zero.detail).toBe("attention: 24 channels do not split into 0 heads");
  });

  it("a model file's own check names the model file's line", () => {
    const e = kilnError(() => buildGraph(gpt2, { n_embd: 25, n_head: 3, n_layer: 1 }), "dsl");
    const gpt2Line = requireLine("models/gpt2.ts", "must be divisible by n_head");
    expect(e.where).toBe(`models/gpt2.ts:${gpt2Line}`);
    expect(e.detail).toBe("gpt2: n_embd (25) must be divisible by n_head (3)");
    const s = kilnError(() => buildGraph(seq2seq, { emb_size: 27, nhead: 3 }), "dsl");
    const evenLine = requireLine("models/seq2seq.ts", "must be even for the");
    expect(s.where).toBe(`models/seq2seq.ts:${evenLine}`);
    expect(s.detail).toBe("seq2seq: emb_size (27) must be even for the sinusoidal encoding");
    const h = kilnError(() => buildGraph(seq2seq, { emb_size: 24, nhead: 5 }), "dsl");
    const headLine = requireLine("models/seq2seq.ts", "must be divisible by nhead");
    expect(h.where).toBe(`models/seq2seq.ts:${headLine}`);
  });

  it("reshape with mismatched sizes", () => {
    const { x } = model();
    const rs = dslError("rs", () => p.reshape(/*@rs*/ x, ["T", 12, 63]));
    expect(rs.detail).toBe("reshape: cannot reshape [T,768] to [T,12,63]: sizes differ");
    const flat = dslError("rsT", () => p.reshape(/*@rsT*/ x, [768]));
    expect(flat.detail).toBe("reshape: cannot reshape [T,768] to [768]: sizes differ");
    const bad = dslError("rsBad", () => p.reshape(/*@rsBad*/ x, ["T", -768]));
    expect(bad.detail).toBe("reshape: attribute shape must be dims, got T,-768");
  });

  it("mixing tensors from two builders", () => {
    const a = model();
    const b = model();
    const w = b.m.param("w", [768, 4]);
    const add = dslError("mix", () => p.add(/*@mix*/ a.x, b.x));
    expect(add.detail).toBe("add: operand %x belongs to another model");
    const mm = dslError("mixMm", () => p.matmul(/*@mixMm*/ a.x, w));
    expect(mm.detail).toBe("matmul: operand %w belongs to another model");
    // Regression: both models have an %x, so finish() silently returned this model's own x.
    const out = dslError("mixOut", () => a.m.finish(/*@mixOut*/ [b.x]));
    expect(out.detail).toBe("output %x belongs to another model");
  });

  it("bad input names, shapes and duplicates", () => {
    const { m } = model();
    const long = "n".repeat(65);
    const cases: [string, () => unknown, string][] = [
      ["in1", () => m.input(/*@in1*/ "1x", "i32", ["T"]), 'input: name "1x" must be an identifier'],
      [
        "in2",
        () => m.input(/*@in2*/ "a-b", "i32", ["T"]),
        'input: name "a-b" must be an identifier',
      ],
      ["in3", () => m.input(/*@in3*/ "", "i32", ["T"]), 'input: name "" must be an identifier'],
      ["in4", () => m.input(/*@in4*/ "x", "i32", ["T"]), 'input: name "x" is already used'],
      ["in5", () => m.input(/*@in5*/ "y", "i32", ["T", -1]), "input: bad shape [T,-1]"],
      ["in6", () => m.input(/*@in6*/ "z", "i32", ["T", 1.5]), "input: bad shape [T,1.5]"],
      // Regression: a name past 64 characters was truncated as the IR key, which text IR then
      // read back as a different input name.
      [
        "in7",
        () => m.input(/*@in7*/ long, "i32", ["T"]),
        `input: name "${long}" is longer than 64 characters`,
      ],
    ];
    for (const [marker, f, detail] of cases) expect(dslError(marker, f).detail).toBe(detail);
    m.param("w", [2]);
    const taken = dslError("in8", () => m.input(/*@in8*/ "w", "i32", ["T"]));
    expect(taken.detail).toBe('input: name "w" is already used');
  });

  it("the same param declared with two shapes (the same shape is a tied weight)", () => {
    const { m } = model();
    const w = m.param("wte.weight", [100, 768]);
    expect(m.param("wte.weight", [100, 768])).toBe(w);
    const e = dslError("param", () => m.param(/*@param*/ "wte.weight", [768, 100]));
    expect(e.detail).toBe('param "wte.weight" declared as [100,768] and [768,100]');
  });

  it("attributes of the wrong kind are refused at the call, not later by the verifier", () => {
    // Regression: slice(x, 1, 0.5, 2) was accepted and failed only in finish() as an "ir" error.
    const { x } = model();
    const slc = dslError("attr", () => p.slice(/*@attr*/ x, 1, 0.5, 2));
    expect(slc.detail).toBe("slice: attribute start must be int, got 0.5");
    const sm = dslError("attr2", () => p.softmax(/*@attr2*/ x, 1.5));
    expect(sm.detail).toBe("softmax: attribute axis must be int, got 1.5");
  });

  it("arithmetic on two plain numbers (regression: was an untyped TypeError)", () => {
    const e = dslError("nums", () => p.add(/*@nums*/ 1, 2));
    expect(e.detail).toBe("add: at least one operand must be a tensor, got 1 and 2");
  });

  it("an error inside a helper in the user's file names the helper's line", () => {
    const { m, x } = model();
    const proj = m.param("proj", [100, 4]);
    const project = (t: Tensor) => p.matmul(/*@helper*/ t, proj);
    expect(dslError("helper", () => project(x)).detail).toContain("inner dims differ");
  });

  it("require() fails at the caller's line", () => {
    const { m } = model();
    const e = dslError("req", () => m.require(/*@req*/ false, "my model: bad config"));
    expect(e.detail).toBe("my model: bad config");
    m.require(true, "never shown");
  });
});
