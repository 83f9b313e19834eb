/** The Program interpreter against the reference interpreter: both models with the default
 *  pipeline, with no passes and with random subsets and orders of the registered passes; random
 *  graphs, before and after the pipeline. float64 throughout, so 1e-9 relative is generous. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { interpret, type Feeds } from "../../../compiler/ir/interpret.ts";
import { createSession } from "../../../compiler/lower/execute.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { DEFAULT_PIPELINE, runPipeline } from "../../../compiler/passes/pipeline.ts";
import { randomFeeds, relError } from "../../helpers/feeds.ts";
import { BINDINGS, fuseAttentionByHand, gpt2Graph, seq2seqGraph } from "./models.ts";
import { buildRandomGraph, recipeArb } from "./random-graph.ts";

/** Runs `g` lowered on feeds made for `original`, and compares with the reference on `original`. */
function expectSame(g: Graph, original: Graph, feeds: Feeds, tol = 1e-9): void {
  const want = interpret(original, feeds);
  const got = createSession(lower(g), feeds.param).run(feeds.inputs);
  expect(got.length).toBe(want.length);
  got.forEach((o, i) => {
    expect(o.shape).toEqual(want[i].shape);
    expect(relError(o, want[i])).toBeLessThanOrEqual(tol);
  });
}

const MODELS = [
  ["gpt2", gpt2Graph()],
  ["seq2seq", seq2seqGraph()],
] as const;

describe.each(MODELS)("%s", (_name, g) => {
  const feeds = randomFeeds(g, BINDINGS);

  it("matches the reference with no passes (exactly: same sums in the same order)", () => {
    expectSame(g, g, feeds, 0);
  });

  it("matches the reference after the default pipeline", () => {
    expectSame(runPipeline(g).graph, g, feeds);
  });

  it("matches the reference with attention fused by hand (online softmax)", () => {
    expectSame(fuseAttentionByHand(g), g, feeds);
  });

  it("matches the reference at T = 1 and S = 1", () => {
    const one = randomFeeds(
      g,
      new Map([
        ["T", 1],
        ["S", 1],
      ]),
      3,
    );
    expectSame(runPipeline(g).graph, g, one);
    expectSame(g, g, one, 0);
  });

  it("matches the reference after any subset of the passes, in any order", () => {
    fc.assert(
      fc.property(fc.shuffledSubarray([...DEFAULT_PIPELINE]), (passes) => {
        expectSame(runPipeline(g, passes).graph, g, feeds);
      }),
      { numRuns: 12, seed: 7 },
    );
  });

  it("runs the same session twice with the same result (no state leaks between runs)", () => {
    const s = createSession(lower(runPipeline(g).graph), feeds.param);
    const a = s.run(feeds.inputs)[0];
    const other = randomFeeds(
      g,
      new Map([
        ["T", 3],
        ["S", 4],
      ]),
      9,
    );
    s.run(other.inputs);
    expect(relError(s.run(feeds.inputs)[0], a)).toBe(0);
  });
});

describe("random graphs", () => {
  it("match the reference, unoptimized and after the default pipeline", () => {
    fc.assert(
      fc.property(recipeArb, fc.boolean(), fc.integer({ min: 1, max: 6 }), (recipe, src, t) => {
        const g = buildRandomGraph(recipe, src);
        const feeds = randomFeeds(
          g,
          new Map([
            ["T", t],
            ["S", 3],
          ]),
          t,
        );
        expectSame(g, g, feeds, 0);
        expectSame(runPipeline(g).graph, g, feeds);
      }),
      { numRuns: 150, seed: 11 },
    );
  });
});
