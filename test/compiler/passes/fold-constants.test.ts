import { describe, expect, it } from "vitest";
import * as p from "../../../compiler/dsl/primitives.ts";
import { nodeData } from "../../../compiler/ir/graph.ts";
import { foldConstants } from "../../../compiler/passes/fold-constants.ts";
import { build, run } from "../util.ts";
import {
  REFERENCE_MODELS,
  checkPass,
  expectIdempotent,
  expectNoRewrite,
  expectPropertyHolds,
  expectRewrite,
} from "./kit.ts";

describe("fold-constants fires", () => {
  it("mul(const 2, const 3) ⇒ const 6, dropping the operands", () => {
    const out = expectRewrite(
      foldConstants,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %a = const() {value=2} : f32[]
        %b = const() {value=3} : f32[]
        %c = mul(%a, %b) : f32[]
        %y = mul(%x, %c) : f32[T,4]
        return %y
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %c = const() {value=6} : f32[]  # fold-constants
        %y = mul(%x, %c) : f32[T,4]
        return %y
      }`,
    );
    expect(out.rewrites).toBe(1);
    expect(nodeData(out.graph, "c").covers).toEqual(["c", "a", "b"]);
  });

  it("folds a chain in one run: sqrt(64), rsqrt, div, neg", () => {
    const out = expectRewrite(
      foldConstants,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %a = const() {value=64} : f32[]
        %s = sqrt(%a) : f32[]
        %one = const() {value=1} : f32[]
        %r = div(%one, %s) : f32[]
        %q = rsqrt(%a) : f32[]
        %d = sub(%r, %q) : f32[]
        %n = neg(%s) : f32[]
        %y = mul(%x, %d) : f32[T,4]
        %z = add(%y, %n) : f32[T,4]
        return %z
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %d = const() {value=0} : f32[]  # fold-constants
        %n = const() {value=-8} : f32[]  # fold-constants
        %y = mul(%x, %d) : f32[T,4]
        %z = add(%y, %n) : f32[T,4]
        return %z
      }`,
    );
    expect(out.rewrites).toBe(5);
    expectIdempotent(foldConstants, out.graph);
  });

  it("keeps a constant another node still reads, and folds into the result's full type", () => {
    expectRewrite(
      foldConstants,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[2,4]) {
        %a = const() {value=2} : f32[]
        %b = const() {value=3} : f32[2,1]
        %c = add(%a, %b) : f32[2,1]
        %e = reshape(%c) {shape=[1,2]} : f32[1,2]
        %t = transpose(%e) {perm=[1,0]} : f32[2,1]
        %w = const() {value=0.5} : f32[4]
        %u = mul(%t, %w) : f32[2,4]
        %y = mul(%x, %a) : f32[T,4]
        return %y, %u
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[2,4]) {
        %a = const() {value=2} : f32[]
        %u = const() {value=2.5} : f32[2,4]  # fold-constants
        %y = mul(%x, %a) : f32[T,4]
        return %y, %u
      }`,
    );
  });

  it("reductions, softmax and matmul over known lengths compute what the interpreter does", () => {
    const g = build((m) => {
      const x = m.input("x", "f32", ["T", 3]);
      const c = m.node("const", { value: 0.1 }, [], "c", { dtype: "f32", shape: [3, 3] });
      const s = p.sum(c, 1);
      const mu = p.mean(c, 0);
      const sm = p.softmax(c, 1);
      const mm = p.matmul(c, c);
      return [p.add(x, p.reshape(s, [3])), p.add(x, mu), p.matmul(x, sm), p.matmul(x, mm)];
    });
    const out = checkPass(foldConstants, g);
    expect(out.rewrites).toBe(5);
    // bit-for-bit: 0.1 + 0.1 + 0.1 is not 0.3
    const s = nodeData(out.graph, "reshape"); // reshape(reduce_sum(c)), both folded
    expect(s.op === "const" && s.attrs.value).toBe(0.1 + 0.1 + 0.1);
    const got = run(out.graph, { x: { shape: [1, 3], data: Float64Array.from([1, 2, 3]) } });
    const want = run(g, { x: { shape: [1, 3], data: Float64Array.from([1, 2, 3]) } });
    got.forEach((o, i) => expect(Array.from(o.data)).toEqual(Array.from(want[i].data)));
  });

  it("folds a fused map and a masked_fill of constants", () => {
    expectRewrite(
      foldConstants,
      `graph @g(%x: f32[4]) -> (f32[4]) {
        %a = const() {value=2} : f32[]
        %b = const() {value=3} : f32[4]
        %m = map(%a, %b) {expr="add(mul($0, $0), $1)"} : f32[4]
        %k = const() {value=1} : f32[4]
        %f = masked_fill(%m, %k) {value=-1} : f32[4]
        %y = add(%x, %f) : f32[4]
        return %y
      }`,
      `graph @g(%x: f32[4]) -> (f32[4]) {
        %f = const() {value=-1} : f32[4]  # fold-constants
        %y = add(%x, %f) : f32[4]
        return %y
      }`,
    );
  });
});

describe("fold-constants must not fire", () => {
  it("on params: weights are not known at compile time", () => {
    expectNoRewrite(
      foldConstants,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %w = param() {name="w"} : f32[4]
        %c = const() {value=2} : f32[]
        %s = mul(%w, %c) : f32[4]
        %y = add(%x, %s) : f32[T,4]
        return %y
      }`,
    );
  });

  it("on range and sinusoidal (symbolic size), nor on what varies along an axis", () => {
    expectNoRewrite(
      foldConstants,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[3,3], f32[T,4]) {
        %pos = range() {start=0, size=T} : i32[T]
        %pe = sinusoidal(%pos) {dim=4} : f32[T,4]
        %y = add(%x, %pe) : f32[T,4]
        %c = const() {value=1} : f32[3,3]
        %m = causal_mask(%c) : f32[3,3]
        %z = const() {value=0} : f32[T,4]
        %s = softmax(%z) {axis=0} : f32[T,4]
        return %y, %m, %s
      }`,
    );
  });

  it("on an op with one non-constant operand", () => {
    expectNoRewrite(
      foldConstants,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %c = const() {value=2} : f32[]
        %y = mul(%x, %c) : f32[T,4]
        return %y
      }`,
    );
  });
});

describe("fold-constants on the reference models", () => {
  for (const [name, make] of REFERENCE_MODELS)
    it(`keeps ${name} equivalent (nothing to fold: every const meets a weight or an input)`, () => {
      expect(checkPass(foldConstants, make()).rewrites).toBe(0);
    });
});

describe("fold-constants on random graphs", () => {
  it("stays equivalent and idempotent", () => expectPropertyHolds(foldConstants));
});
