import { describe, expect, it } from "vitest";
import { nodeData } from "../../../compiler/ir/graph.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { RULES, simplify, simplifyCounts } from "../../../compiler/passes/simplify.ts";
import {
  REFERENCE_MODELS,
  checkPass,
  expectIdempotent,
  expectNoRewrite,
  expectPropertyHolds,
  expectRewrite,
} from "./kit.ts";

const counts = (text: string) => Object.fromEntries(simplifyCounts(parseGraph(text)).counts);

describe("simplify fires", () => {
  it("transpose∘transpose ⇒ one transpose with the composed perm", () => {
    const input = `graph @g(%x: f32[2,3,4]) -> (f32[4,2,3]) {
        %a = transpose(%x) {perm=[1,2,0]} : f32[3,4,2]
        %b = transpose(%a) {perm=[1,2,0]} : f32[4,2,3]
        return %b
      }`;
    const out = expectRewrite(
      simplify,
      input,
      `graph @g(%x: f32[2,3,4]) -> (f32[4,2,3]) {
        %b = transpose(%x) {perm=[2,0,1]} : f32[4,2,3]  # simplify
        return %b
      }`,
    );
    expect(out.rewrites).toBe(1);
    expect(nodeData(out.graph, "b").covers).toEqual(["b", "a"]);
    expect(counts(input)).toEqual({ "transpose-transpose": 1 });
  });

  it("transpose∘transpose that composes to the identity ⇒ nothing; a chain of three in one run", () => {
    expectRewrite(
      simplify,
      `graph @g(%x: f32[T,3,8]) -> (f32[T,3,8], f32[3,8,T]) {
        %a = transpose(%x) {perm=[1,0,2]} : f32[3,T,8]
        %b = transpose(%a) {perm=[1,0,2]} : f32[T,3,8]
        %c = transpose(%x) {perm=[1,0,2]} : f32[3,T,8]
        %d = transpose(%c) {perm=[0,2,1]} : f32[3,8,T]
        %e = transpose(%d) {perm=[0,2,1]} : f32[3,T,8]
        %f = transpose(%e) {perm=[0,2,1]} : f32[3,8,T]
        return %b, %f
      }`,
      `graph @g(%x: f32[T,3,8]) -> (f32[T,3,8], f32[3,8,T]) {
        %f = transpose(%x) {perm=[1,2,0]} : f32[3,8,T]  # simplify
        return %x, %f
      }`,
    );
  });

  it("reshape∘reshape ⇒ one reshape; reshape back to x's shape ⇒ x", () => {
    const input = `graph @g(%x: f32[T,24]) -> (f32[T,4,6], f32[T,24]) {
        %a = reshape(%x) {shape=[T,3,8]} : f32[T,3,8]
        %b = reshape(%a) {shape=[T,4,6]} : f32[T,4,6]
        %c = reshape(%x) {shape=[T,2,12]} : f32[T,2,12]
        %d = reshape(%c) {shape=[T,24]} : f32[T,24]
        return %b, %d
      }`;
    expectRewrite(
      simplify,
      input,
      `graph @g(%x: f32[T,24]) -> (f32[T,4,6], f32[T,24]) {
        %b = reshape(%x) {shape=[T,4,6]} : f32[T,4,6]  # simplify
        return %b, %x
      }`,
    );
    expect(counts(input)).toEqual({ "reshape-reshape": 2 });
  });

  it("reshape to the same shape, identity transpose, whole-axis slice ⇒ x", () => {
    const input = `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %a = reshape(%x) {shape=[T,4]} : f32[T,4]
        %b = transpose(%a) {perm=[0,1]} : f32[T,4]
        %c = slice(%b) {axis=1, start=0, size=4} : f32[T,4]
        %y = relu(%c) : f32[T,4]
        return %y
      }`;
    expectRewrite(
      simplify,
      input,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %y = relu(%x) : f32[T,4]
        return %y
      }`,
    );
    expect(counts(input)).toEqual({ "reshape-same": 1, "transpose-identity": 1, "slice-whole": 1 });
  });

  it("x × 1, 1 × x, x + 0, 0 + x, x − 0, x / 1, −(−x) ⇒ x, counted per rule", () => {
    const input = `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %one = const() {value=1} : f32[]
        %zero = const() {value=0} : f32[4]
        %a = mul(%x, %one) : f32[T,4]
        %b = mul(%one, %a) : f32[T,4]
        %c = add(%b, %zero) : f32[T,4]
        %d = add(%zero, %c) : f32[T,4]
        %e = sub(%d, %zero) : f32[T,4]
        %f = div(%e, %one) : f32[T,4]
        %n = neg(%f) : f32[T,4]
        %m = neg(%n) : f32[T,4]
        %y = tanh(%m) : f32[T,4]
        return %y
      }`;
    const out = expectRewrite(
      simplify,
      input,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %y = tanh(%x) : f32[T,4]
        return %y
      }`,
    );
    expect(out.rewrites).toBe(7);
    expect(counts(input)).toEqual({
      "mul-one": 1,
      "one-mul": 1,
      "add-zero": 1,
      "zero-add": 1,
      "sub-zero": 1,
      "div-one": 1,
      "neg-neg": 1,
    });
  });

  it("an output that simplifies away is replaced by its value in the return", () => {
    expectRewrite(
      simplify,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        %one = const() {value=1} : f32[]
        %y = mul(%x, %one) : f32[T,4]
        return %y
      }`,
      `graph @g(%x: f32[T,4]) -> (f32[T,4]) {
        return %x
      }`,
    );
  });
});

describe("simplify must not fire", () => {
  it("on x × 1 or x + 0 where the constant broadcasts x to a bigger shape", () => {
    expectNoRewrite(
      simplify,
      `graph @g(%x: f32[4]) -> (f32[T,4], f32[2,4], f32[3,4]) {
        %one = const() {value=1} : f32[T,4]
        %a = mul(%x, %one) : f32[T,4]
        %zero = const() {value=0} : f32[2,1]
        %b = add(%zero, %x) : f32[2,4]
        %c = const() {value=1} : f32[3,1]
        %d = div(%x, %c) : f32[3,4]
        return %a, %b, %d
      }`,
    );
  });

  it("on x × 2, x − 0 written 0 − x, x / 0, a partial slice, a real transpose or reshape", () => {
    expectNoRewrite(
      simplify,
      `graph @g(%x: f32[T,4]) -> (f32[T,4], f32[T,4], f32[T,4], f32[T,3], f32[4,T], f32[T,2,2]) {
        %two = const() {value=2} : f32[]
        %zero = const() {value=0} : f32[]
        %a = mul(%x, %two) : f32[T,4]
        %b = sub(%zero, %x) : f32[T,4]
        %c = div(%x, %zero) : f32[T,4]
        %d = slice(%x) {axis=1, start=1, size=3} : f32[T,3]
        %e = transpose(%x) {perm=[1,0]} : f32[4,T]
        %f = reshape(%x) {shape=[T,2,2]} : f32[T,2,2]
        return %a, %b, %c, %d, %e, %f
      }`,
    );
  });

  it("on a slice from 0 that stops short of the end", () => {
    expectNoRewrite(
      simplify,
      `graph @g(%x: f32[T,4]) -> (f32[T,3]) {
        %a = slice(%x) {axis=1, start=0, size=3} : f32[T,3]
        return %a
      }`,
    );
  });
});

describe("simplify's rule table", () => {
  it("names every rule once", () => {
    const names = RULES.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it("is idempotent after a chain collapses", () => {
    const out = simplify.run(
      parseGraph(`graph @g(%x: f32[2,3,4]) -> (f32[3,2,4]) {
        %a = transpose(%x) {perm=[1,0,2]} : f32[3,2,4]
        %b = reshape(%a) {shape=[3,8]} : f32[3,8]
        %c = reshape(%b) {shape=[3,2,4]} : f32[3,2,4]
        %d = neg(%c) : f32[3,2,4]
        %e = neg(%d) : f32[3,2,4]
        return %e
      }`),
    );
    expect(out.rewrites).toBe(2);
    expectIdempotent(simplify, out.graph);
  });
});

describe("simplify on the reference models", () => {
  for (const [name, make] of REFERENCE_MODELS)
    it(`keeps ${name} equivalent`, () => {
      const out = checkPass(simplify, make());
      expect(out.rewrites).toBe(0);
    });
});

describe("simplify on random graphs", () => {
  it("stays equivalent and idempotent", () => expectPropertyHolds(simplify));
});
