import { describe, expect, it } from "vitest";
import { nodeData } from "../../../compiler/ir/graph.ts";
import { canonical, cse } from "../../../compiler/passes/cse.ts";
import {
  REFERENCE_MODELS,
  checkPass,
  expectNoRewrite,
  expectPropertyHolds,
  expectRewrite,
} from "./kit.ts";

describe("cse fires", () => {
  it("merges equal consts, then the users they make identical, in one run", () => {
    const out = expectRewrite(
      cse,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %c = const() {value=0.5} : f32[]
        %c_1 = const() {value=0.5} : f32[]
        %a = mul(%x, %c) : f32[T,4]
        %b = mul(%x, %c_1) : f32[T,4]
        %ea = exp(%a) : f32[T,4]
        %eb = exp(%b) : f32[T,4]
        %y = add(%ea, %eb) : f32[T,4]
        return %y
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %c = const() {value=0.5} : f32[]
        %a = mul(%x, %c) : f32[T,4]
        %ea = exp(%a) : f32[T,4]
        %y = add(%ea, %ea) : f32[T,4]
        return %y
      }`,
    );
    expect(out.rewrites).toBe(3);
    expect(nodeData(out.graph, "ea").covers).toEqual(["ea", "eb"]);
  });

  it("compares attributes deeply, expression attributes included; keeps the first", () => {
    expectRewrite(
      cse,
      `graph @g(%x: f32[T,4], %w: f32[4,4]) -> (f32[T,4], f32[T,4], f32[4,T], f32[T,4]) {
        %t = transpose(%w) {perm=[1,0]} : f32[4,4]
        %t2 = transpose(%w) {perm=[1,0]} : f32[4,4]
        %m1 = matmul(%x, %t) {transposeB=true} : f32[T,4]
        %m2 = matmul(%x, %t2) {transposeB=true} : f32[T,4]
        %e1 = map(%m1, %x) {expr="add(tanh($0), $1)"} : f32[T,4]
        %e2 = map(%m2, %x) {expr="add(tanh($0), $1)"} : f32[T,4]
        %tx = transpose(%x) {perm=[1,0]} : f32[4,T]
        %tx2 = transpose(%x) {perm=[1,0]} : f32[4,T]
        %s = sub(%tx, %tx2) : f32[4,T]
        return %e1, %e2, %s, %m2
      }`,
      `graph @g(%x: f32[T,4], %w: f32[4,4]) -> (f32[T,4], f32[T,4], f32[4,T], f32[T,4]) {
        %t = transpose(%w) {perm=[1,0]} : f32[4,4]
        %m1 = matmul(%x, %t) {transposeB=true} : f32[T,4]
        %e1 = map(%m1, %x) {expr="add(tanh($0), $1)"} : f32[T,4]
        %tx = transpose(%x) {perm=[1,0]} : f32[4,T]
        %s = sub(%tx, %tx) : f32[4,T]
        return %e1, %e1, %s, %m1
      }`,
    );
  });

  it("merges params of one name and ranges of one size", () => {
    expectRewrite(
      cse,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[T,4]) {
        %w = param() {name="w"} : f32[4]
        %w2 = param() {name="w"} : f32[4]
        %pos = range() {start=0, size=T} : i32[T]
        %pos2 = range() {start=0, size=T} : i32[T]
        %t = param() {name="table"} : f32[8,4]
        %p1 = gather(%t, %pos) : f32[T,4]
        %p2 = gather(%t, %pos2) : f32[T,4]
        %a = add(%x, %w) : f32[T,4]
        %b = add(%p1, %w2) : f32[T,4]
        %c = add(%p2, %w) : f32[T,4]
        return %a, %c
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[T,4]) {
        %w = param() {name="w"} : f32[4]
        %pos = range() {start=0, size=T} : i32[T]
        %t = param() {name="table"} : f32[8,4]
        %p1 = gather(%t, %pos) : f32[T,4]
        %a = add(%x, %w) : f32[T,4]
        %b = add(%p1, %w) : f32[T,4]
        return %a, %b
      }`,
    );
  });
});

describe("cse must not fire", () => {
  it("on two inputs of one type, operands in other slots, other attributes or types", () => {
    expectNoRewrite(
      cse,
      `graph @g(%x: f32[4,4], %y: f32[4,4]) -> (f32[4,4], f32[4,4], f32[4,4], f32[4,4], f32[4,4], f32[4,4]) {
        %a = sub(%x, %y) : f32[4,4]
        %b = sub(%y, %x) : f32[4,4]
        %c = matmul(%x, %y) {transposeB=false} : f32[4,4]
        %d = matmul(%x, %y) {transposeB=true} : f32[4,4]
        %one = const() {value=1} : f32[]
        %ones = const() {value=1} : f32[4]
        %e = add(%x, %one) : f32[4,4]
        %f = add(%x, %ones) : f32[4,4]
        return %a, %b, %c, %d, %e, %f
      }`,
    );
  });

  it("on 0 and −0, nor on NaN and ∞ (which JSON would both write as null)", () => {
    expectNoRewrite(
      cse,
      `graph @g(%x: f32[4]) -> (f32[4], f32[4], f32[4], f32[4]) {
        %z = const() {value=0} : f32[]
        %nz = const() {value=-0} : f32[]
        %n = const() {value=nan} : f32[]
        %i = const() {value=inf} : f32[]
        %a = div(%x, %z) : f32[4]
        %b = div(%x, %nz) : f32[4]
        %c = add(%x, %n) : f32[4]
        %d = add(%x, %i) : f32[4]
        return %a, %b, %c, %d
      }`,
    );
    expect(canonical({ b: [1, -0], a: "x" })).toBe('{"a":"x","b":[1,-0]}');
  });
});

describe("cse on the reference models", () => {
  // gpt2: the attention scale 1/√8 appears once per layer; seq2seq: once per attention (6) and
  // √emb_size once per embedding (2)
  for (const [name, make] of REFERENCE_MODELS)
    it(`keeps ${name} equivalent, merging the repeated scale constants`, () => {
      const out = checkPass(cse, make());
      expect(out.rewrites).toBe(name === "gpt2" ? 1 : 6);
    });
});

describe("cse on random graphs", () => {
  it("stays equivalent and idempotent", () => expectPropertyHolds(cse));
});
