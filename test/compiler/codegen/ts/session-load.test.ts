/** The generated `load(weights)` keeps only what sessions read: a param that only a matmul's pack
 *  reads is taken inside the pack call and is garbage once packed (counted with v8.queryObjects,
 *  which collects garbage first: no timing involved); a param a kernel reads (wte, for the
 *  gather) is kept; each param is asked for once. */
import { queryObjects } from "node:v8";
import { describe, expect, it } from "vitest";
import { emitModule } from "../../../../compiler/codegen/ts/module.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import { runPipeline } from "../../../../compiler/passes/pipeline.ts";
import { randomFeeds } from "../../../helpers/feeds.ts";
import { BINDINGS, gpt2Graph } from "../../lower/models.ts";
import { compile } from "./harness.ts";

/** The arrays handed to load, by kind: the test tells them apart by class, holding none. */
class PackOnly extends Float32Array {}
class Kept extends Float32Array {}

const PACKED = /\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;
const live = (c: typeof Float32Array) => queryObjects(c, { format: "count" });

describe("load (gpt2)", () => {
  const g = runPipeline(gpt2Graph()).graph;
  const program = lower(g);
  const m = compile(program, { graph: g });
  const feeds = randomFeeds(g, BINDINGS);
  const names = m.model.params.map((p) => p.name);
  const packOnly = names.filter((n) => PACKED.test(n));

  it("takes a packed-only param inside its pack call", () => {
    expect(packOnly.length).toBeGreaterThan(0);
    const source = emitModule(program, { graph: g });
    for (const n of packOnly)
      expect(source).toMatch(
        new RegExp(`= pack_\\w+\\(weight\\(weights, "${n.replace(/\./g, "\\.")}"`),
      );
  });

  it("keeps the params sessions read and lets every packed-only one go once packed", () => {
    const asked: string[] = [];
    let aliveAtLast = -1;
    const loaded = m.load((name) => {
      asked.push(name);
      // When the last packed-only param is asked for, the earlier ones are garbage (one may
      // still sit in a stale interpreter register). queryObjects is slow: asked once.
      if (name === packOnly.at(-1)) aliveAtLast = live(PackOnly);
      const w = feeds.param(name);
      if (!w) return undefined;
      return PACKED.test(name) ? PackOnly.from(w.data) : Kept.from(w.data);
    });
    expect([...asked].sort()).toEqual([...names].sort());
    expect(aliveAtLast).toBeGreaterThanOrEqual(0);
    expect(aliveAtLast).toBeLessThanOrEqual(1);
    expect(live(PackOnly)).toBe(0);
    const kept = Object.values(loaded).filter((v) => v instanceof Kept);
    expect(kept.length).toBe(names.length - packOnly.length);
    expect(live(Kept)).toBe(kept.length);
  });
});
