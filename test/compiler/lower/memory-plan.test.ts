/** The memory plan: temps that are live at the same time never share bytes, everything fits in
 *  the arena, only temps are planned, and GPT-2's activations fit in a fraction of what one
 *  allocation per temp would take. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildGraph } from "../../../compiler/dsl/model.ts";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { planMemory, type MemoryPlan } from "../../../compiler/lower/memory-plan.ts";
import type { Program } from "../../../compiler/lower/program.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import gpt2 from "../../../models/gpt2.ts";
import { gpt2Graph, seq2seqGraph } from "./models.ts";
import { buildRandomGraph, recipeArb } from "./random-graph.ts";

function expectSound(p: Program, m: MemoryPlan): void {
  const ids = [...m.offsets.keys()];
  for (const id of ids) {
    expect(p.buffers[id].role).toBe("temp");
    expect(m.offsets.get(id)! + m.sizes.get(id)!).toBeLessThanOrEqual(m.arenaBytes);
  }
  for (const a of ids)
    for (const b of ids) {
      if (a >= b) continue;
      const [la, lb] = [m.lifetimes.get(a)!, m.lifetimes.get(b)!];
      if (la.first > lb.last || lb.first > la.last) continue; // never live together
      const [oa, ob] = [m.offsets.get(a)!, m.offsets.get(b)!];
      const apart = oa + m.sizes.get(a)! <= ob || ob + m.sizes.get(b)! <= oa;
      if (!apart) expect.fail(`b${a} and b${b} are live together and overlap`);
    }
  expect(m.peakBytes).toBe(m.arenaBytes);
  expect(m.arenaBytes).toBeGreaterThanOrEqual(m.liveBytes);
  expect(m.arenaBytes).toBeLessThanOrEqual(
    m.unplannedBytes + 256 * m.offsets.size, // padding to the alignment at most
  );
}

const bindingsArb = fc.record({
  T: fc.integer({ min: 1, max: 12 }),
  S: fc.integer({ min: 1, max: 9 }),
});

describe("on random graphs", () => {
  it("no two simultaneously live temps overlap, and all fit", () => {
    fc.assert(
      fc.property(recipeArb, fc.boolean(), fc.boolean(), bindingsArb, (recipe, src, opt, b) => {
        let g: Graph = buildRandomGraph(recipe, src);
        if (opt) g = runPipeline(g).graph;
        const p = lower(g);
        const bindings = new Map([
          ["T", b.T],
          ["S", b.S],
        ]);
        expectSound(p, planMemory(p, bindings));
        expectSound(p, planMemory(p, bindings, { align: 1, bytes: () => 1 }));
      }),
      { numRuns: 200, seed: 3 },
    );
  });
});

describe.each([
  ["gpt2", gpt2Graph()],
  ["seq2seq", seq2seqGraph()],
])("%s", (_name, g) => {
  it.each([
    ["no passes", []],
    ["the default pipeline", undefined],
  ] as const)("is sound with %s, at any T and S", (_what, passes) => {
    const p = lower(runPipeline(g, passes).graph);
    fc.assert(
      fc.property(bindingsArb, (b) => {
        expectSound(p, planMemory(p, new Map(Object.entries(b))));
      }),
      { numRuns: 20, seed: 1 },
    );
  });

  it("plans only temps of the source and step phases", () => {
    const p = lower(runPipeline(g).graph);
    const m = planMemory(
      p,
      new Map([
        ["T", 4],
        ["S", 4],
      ]),
    );
    for (const b of p.buffers)
      expect(m.offsets.has(b.id)).toBe(b.role === "temp" && b.phase !== "load");
  });
});

describe("GPT-2 small (12 layers, d 768, 12 heads, vocab 50257, n_positions 1024) at T = 256", () => {
  const g = buildGraph(gpt2, {
    n_layer: 12,
    n_embd: 768,
    n_head: 12,
    vocab_size: 50257,
    n_positions: 1024,
  });
  const T256 = new Map([["T", 256]]);

  it("needs at most 40% of one-allocation-per-temp after the default pipeline", () => {
    const m = planMemory(lower(runPipeline(g).graph), T256);
    expect(m.peakBytes).toBeLessThanOrEqual(0.4 * m.unplannedBytes);
    expect(m.peakBytes).toBeLessThanOrEqual(1.25 * m.liveBytes); // near what any plan can do
  });

  it("and without passes too", () => {
    const m = planMemory(lower(g), T256);
    expect(m.peakBytes).toBeLessThanOrEqual(0.4 * m.unplannedBytes);
  });
});
