/** Property: the generated TypeScript computes what the Program interpreter computes, on random
 *  graphs covering every kernel family and view (test/compiler/lower/random-graph.ts), before and
 *  after the default pipeline, at random sizes including T = 1 and S = 1. Float32 inputs and
 *  weights: the only difference left is the float32 storage of intermediate results (measured:
 *  ≤ 1.3e-7 relative over 300 graphs; the bar is 1e-5). */
import fc from "fast-check";
import { expect, it } from "vitest";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { runPipeline } from "../../../../compiler/passes/pipeline.ts";
import { randomFeeds } from "../../../helpers/feeds.ts";
import { buildRandomGraph, recipeArb } from "../../lower/random-graph.ts";
import { pair, relError } from "./harness.ts";

const f32 = (a: NDArray): NDArray => ndarray(a.shape, Float32Array.from(a.data));

it("agrees with the Program interpreter on random graphs", () => {
  fc.assert(
    fc.property(
      recipeArb,
      fc.boolean(),
      fc.boolean(),
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 1, max: 9 }),
      (recipe, withSource, optimize, t, s) => {
        const original = buildRandomGraph(recipe, withSource);
        const g = optimize ? runPipeline(original).graph : original;
        const feeds = randomFeeds(
          original,
          new Map([
            ["T", t],
            ["S", s],
          ]),
          t * 31 + s,
        );
        const inputs = new Map([...feeds.inputs].map(([k, a]) => [k, f32(a)]));
        const param = (n: string) => {
          const w = feeds.param(n);
          return w && f32(w);
        };
        const { got, want } = pair(g, param, { maxDims: new Map([["S", 9]]) }).run(inputs);
        expect(got.length).toBe(want.length);
        got.forEach((o, i) => expect(relError(o, want[i])).toBeLessThanOrEqual(1e-5));
      },
    ),
    { numRuns: 40, seed: 11 },
  );
});
