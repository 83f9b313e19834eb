/** The key a generated module is cached under (runtime/cpu/module-key.ts): the same for the same
 *  program lowered twice (graphology's made-up edge keys left out), different when the program,
 *  the graphs or any value in them differs — NaN, ±Infinity, -0 and undefined included — and
 *  none for a value it cannot write exactly. */
import { describe, expect, it } from "vitest";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import type { Program } from "../../../compiler/lower/program.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { moduleKey } from "../../../runtime/cpu/module-key.ts";
import { gpt2Graph } from "../../compiler/lower/models.ts";

function compiled(nLayer: number): { program: Program; graph: Graph; source: Graph } {
  const source = gpt2Graph(nLayer);
  const graph = runPipeline(source).graph;
  return { program: lower(graph), graph, source };
}

const keyOf = (c: { program: Program; graph: Graph; source: Graph }) =>
  moduleKey(c.program, { graph: c.graph, source: c.source });

/** The program with one buffer's name replaced by `name`. */
const renamed = (p: Program, name: unknown): Program =>
  ({ ...p, buffers: p.buffers.map((b, i) => (i === 0 ? { ...b, name } : b)) }) as Program;

describe("moduleKey", () => {
  const a = compiled(1);

  it("is the same for the same program made twice", () => {
    const key = keyOf(a);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(keyOf(compiled(1))).toBe(key);
  });

  it("differs when the program or either graph differs", () => {
    const b = compiled(2);
    const keys = [
      keyOf(a),
      keyOf(b),
      keyOf({ ...a, graph: b.graph }),
      keyOf({ ...a, source: b.source }),
      keyOf({ ...a, program: renamed(a.program, "other") }),
    ];
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("tells apart the values JSON would merge", () => {
    const values = [NaN, Infinity, -Infinity, 0, -0, null, undefined, "NaN", 1n];
    const keys = values.map((v) => keyOf({ ...a, program: renamed(a.program, v) }));
    expect(new Set(keys).size).toBe(values.length);
    expect(keyOf({ ...a, program: renamed(a.program, new Map([["k", 1]])) })).not.toBe(
      keyOf({ ...a, program: renamed(a.program, {}) }),
    );
  });

  it("gives no key for a value it cannot write exactly", () => {
    expect(keyOf({ ...a, program: renamed(a.program, () => 1) })).toBeUndefined();
    expect(keyOf({ ...a, program: renamed(a.program, new Date(0)) })).toBeUndefined();
  });
});
