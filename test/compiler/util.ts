/** Helpers shared by the compiler tests: seeded random data, feeding and running graphs through
 *  the reference interpreter, and tolerance comparisons. */
import { expect } from "vitest";
import { ModelBuilder, type Tensor } from "../../compiler/dsl/builder.ts";
import { KilnError, type ErrorKind } from "../../compiler/errors.ts";
import type { Graph } from "../../compiler/ir/graph.ts";
import { interpret } from "../../compiler/ir/interpret.ts";
import { ndarray, type NDArray } from "../../compiler/ir/ndarray.ts";

/** mulberry32: a small deterministic generator, so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-scale, scale). */
export function randn(shape: readonly number[], seed: number, scale = 1): NDArray {
  const r = rng(seed);
  const a = ndarray(shape);
  for (let i = 0; i < a.data.length; i++) a.data[i] = (2 * r() - 1) * scale;
  return a;
}

/** A nested array (as written by hand in a test) as an NDArray. */
export function nd(shape: readonly number[], values: readonly number[]): NDArray {
  return ndarray(shape, values);
}

export type Arrays = Readonly<Record<string, NDArray>>;

/** Runs a graph with inputs and params given by name. */
export function run(g: Graph, inputs: Arrays = {}, params: Arrays = {}): NDArray[] {
  return interpret(g, {
    inputs: new Map(Object.entries(inputs)),
    param: (name) =>
      Object.prototype.hasOwnProperty.call(params, name) ? params[name] : undefined,
  });
}

/** Builds a one-output (or many-output) graph with a fresh builder. */
export function build(f: (m: ModelBuilder) => Tensor | readonly Tensor[], name = "t"): Graph {
  const m = new ModelBuilder(name);
  const out = f(m);
  return m.finish(Array.isArray(out) ? out : [out as Tensor]);
}

/** Elementwise |a − e| ≤ tol·(1 + |e|); NaN only where NaN is expected, ±∞ exactly. */
export function expectClose(
  actual: NDArray,
  expected: NDArray | readonly number[],
  tol = 1e-12,
): void {
  const exp =
    "data" in expected ? expected : { shape: actual.shape, data: Float64Array.from(expected) };
  expect(actual.shape).toEqual(exp.shape);
  expect(actual.data.length).toBe(exp.data.length);
  for (let i = 0; i < exp.data.length; i++) {
    const [a, e] = [actual.data[i], exp.data[i]];
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e)) expect.fail(`element ${i}: got ${a}, expected ${e}`);
    } else if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e))))
      expect.fail(`element ${i}: got ${a}, expected ${e} (tol ${tol})`);
  }
}

/** Runs f and returns the KilnError it throws, checking its kind. */
export function kilnError(f: () => unknown, kind: ErrorKind): KilnError {
  try {
    f();
  } catch (e) {
    if (!(e instanceof KilnError)) throw e;
    expect(e.kind).toBe(kind);
    return e;
  }
  return expect.fail("expected a KilnError");
}
