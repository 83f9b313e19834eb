/** The default pipeline as a whole: equivalent, deterministic, idempotent, types preserved,
 *  verified after every pass, and its statistics as the CLI reports them. */
import { describe, expect, it } from "vitest";
import { nodeData } from "../../../compiler/ir/graph.ts";
import { printGraph } from "../../../compiler/ir/print.ts";
import { formatType } from "../../../compiler/ir/shape.ts";
import {
  DEFAULT_PIPELINE,
  PASSES,
  passesByName,
  runPipeline,
} from "../../../compiler/passes/pipeline.ts";
import { KilnError } from "../../../compiler/errors.ts";
import { expectEquivalent } from "../../helpers/feeds.ts";
import { BINDINGS, REFERENCE_MODELS } from "./kit.ts";

describe.each(REFERENCE_MODELS)("the default pipeline on %s", (_name, build) => {
  it("computes the same numbers", () => {
    const g = build();
    expectEquivalent(runPipeline(g).graph, g, BINDINGS);
  });

  it("is deterministic and idempotent, and keeps the output types", () => {
    const g = build();
    const once = runPipeline(g).graph;
    expect(printGraph(runPipeline(build()).graph)).toBe(printGraph(once));
    const twice = runPipeline(once);
    expect(printGraph(twice.graph)).toBe(printGraph(once));
    expect(twice.stats.every((s) => s.rewrites === 0)).toBe(true);
    expect(once.outputs.map((k) => formatType(nodeData(once, k).type))).toEqual(
      g.outputs.map((k) => formatType(nodeData(g, k).type)),
    );
  });

  it("records node counts and rewrites per pass, in order", () => {
    const r = runPipeline(build());
    expect(r.stats.map((s) => s.name)).toEqual(DEFAULT_PIPELINE.map((p) => p.name));
    for (let i = 1; i < r.stats.length; i++)
      expect(r.stats[i].nodesBefore).toBe(r.stats[i - 1].nodes);
    expect(r.stats.reduce((a, s) => a + s.rewrites, 0)).toBeGreaterThan(0);
    expect(r.stats[r.stats.length - 1].nodes).toBeLessThan(r.stats[0].nodesBefore);
  });

  it("calls back after every pass with a verified graph", () => {
    const seen: string[] = [];
    runPipeline(build(), DEFAULT_PIPELINE, (name, g) => {
      seen.push(name);
      expect(g.nodes.order).toBeGreaterThan(0);
    });
    expect(seen).toEqual(DEFAULT_PIPELINE.map((p) => p.name));
  });
});

it("looks passes up by name, and names them all when one is unknown", () => {
  expect(passesByName(["cse", "dce"]).map((p) => p.name)).toEqual(["cse", "dce"]);
  try {
    passesByName(["fuse-everything"]);
    expect.unreachable();
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    for (const name of PASSES.keys()) expect((e as KilnError).detail).toContain(name);
  }
});
