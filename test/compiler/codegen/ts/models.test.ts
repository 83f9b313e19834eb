/** The generated TypeScript for the two reference models at test size: against the Program
 *  interpreter with the default pipeline, with no passes and with attention fused by hand, at
 *  T = 5 / S = 7 and at T = 1 / S = 1; sessions carry no state between runs; KV-cache decoding
 *  (a prefill, then steps of one or several positions) gives the logits of one full forward; the
 *  source phase runs once per source; misuse is a RuntimeError naming the input. */
import { describe, expect, it } from "vitest";
import type { Graph } from "../../../../compiler/ir/graph.ts";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import type { Program } from "../../../../compiler/lower/program.ts";
import { runPipeline } from "../../../../compiler/passes/pipeline.ts";
import { randomFeeds } from "../../../helpers/feeds.ts";
import { fuseAttentionByHand, gpt2Graph, seq2seqGraph } from "../../lower/models.ts";
import { asNd, compile, pair, relError, tensors, weightSource } from "./harness.ts";

const f32 = (a: NDArray): NDArray => ndarray(a.shape, Float32Array.from(a.data));

/** Seeded float32 feeds for the graph at these sizes. */
function feeds(g: Graph, t: number, s: number, seed = 1) {
  const f = randomFeeds(
    g,
    new Map([
      ["T", t],
      ["S", s],
    ]),
    seed,
  );
  const inputs = new Map([...f.inputs].map(([k, a]) => [k, f32(a)]));
  const param = (n: string) => {
    const w = f.param(n);
    return w && f32(w);
  };
  return { inputs, param };
}

const MODELS = [
  ["gpt2", gpt2Graph()],
  ["seq2seq", seq2seqGraph()],
] as const;

describe.each(MODELS)("%s", (_name, g) => {
  const variants = [
    ["the default pipeline", runPipeline(g).graph],
    ["no passes", g],
    ["attention fused by hand", fuseAttentionByHand(g)],
  ] as const;

  it.each(variants)(
    "matches the interpreter after %s (T = 5, S = 7 and T = 1, S = 1)",
    (_v, opt) => {
      for (const [t, s] of [
        [5, 7],
        [1, 1],
      ]) {
        const f = feeds(g, t, s);
        const { got, want } = pair(opt, f.param).run(f.inputs);
        got.forEach((o, i) => expect(relError(o, want[i])).toBeLessThanOrEqual(1e-5));
      }
    },
  );

  it("runs one session on different sizes with no state leaking between runs", () => {
    const p = pair(runPipeline(g).graph, feeds(g, 5, 7).param);
    const a = feeds(g, 5, 7, 2);
    const first = p.run(a.inputs).got[0];
    p.run(feeds(g, 3, 4, 3).inputs);
    p.run(feeds(g, 9, 2, 4).inputs);
    expect(relError(p.run(a.inputs).got[0], first)).toBe(0);
  });
});

/** Rows [from, to) of the step inputs (those over T). */
function rows(inputs: ReadonlyMap<string, NDArray>, p: Program, from: number, to: number) {
  const out = new Map<string, NDArray>();
  for (const id of p.inputs) {
    const b = p.buffers[id];
    if (b.phase !== "step") continue;
    const a = inputs.get(b.name!)!;
    out.set(b.name!, ndarray([to - from, ...a.shape.slice(1)], a.data.subarray(from, to)));
  }
  return out;
}

describe.each(MODELS)("%s with the KV cache", (_name, g) => {
  const opt = runPipeline(g).graph;
  const program = lower(opt);
  const m = compile(program);

  it.each([[[3, 1, 1, 1, 1]], [[1, 1, 1, 1, 1, 1, 1, 1]], [[2, 3, 1, 2]], [[8]]])(
    "prefill then steps of %j positions = one full forward",
    (chunks) => {
      const t = chunks.reduce((a, b) => a + b, 0);
      const f = feeds(g, t, 6, t);
      const w = weightSource(f.param);
      const full = m.createSession(w).run(tensors(m, f.inputs))[0];
      const s = m.createSession(w);
      const src = new Map([...f.inputs].filter(([k]) => k !== "tokens"));
      const parts = [
        s.run(tensors(m, new Map([...src, ...rows(f.inputs, program, 0, chunks[0])])))[0],
      ];
      let at = chunks[0];
      for (const n of chunks.slice(1)) {
        parts.push(s.step(tensors(m, rows(f.inputs, program, at, at + n), ["step"]))[0]);
        at += n;
        expect(s.cachedLength).toBe(at);
      }
      const got = ndarray(full.shape, Float64Array.from(parts.flatMap((o) => [...o.data])));
      // Same sums in the same order, whether a row comes in a prefill or a step.
      expect(relError(got, asNd(full))).toBe(0);
    },
  );

  it("shares loaded weights between sessions that decode independently", () => {
    const f = feeds(g, 6, 5, 3);
    const loaded = m.load(weightSource(f.param));
    const full = m.createSession(loaded).run(tensors(m, f.inputs))[0];
    const [a, b] = [m.createSession(loaded), m.createSession(loaded)];
    const src = new Map([...f.inputs].filter(([k]) => k !== "tokens"));
    a.run(tensors(m, new Map([...src, ...rows(f.inputs, program, 0, 4)])));
    b.run(tensors(m, new Map([...src, ...rows(f.inputs, program, 0, 2)])));
    const last = (o: { data: ArrayLike<number> }) => Array.from(o.data);
    const row = (i: number) =>
      Array.from(full.data.subarray((i * full.data.length) / 6, ((i + 1) * full.data.length) / 6));
    expect(last(b.step(tensors(m, rows(f.inputs, program, 2, 3), ["step"]))[0])).toEqual(row(2));
    expect(last(a.step(tensors(m, rows(f.inputs, program, 4, 5), ["step"]))[0])).toEqual(row(4));
    expect(last(b.step(tensors(m, rows(f.inputs, program, 3, 4), ["step"]))[0])).toEqual(row(3));
  });

  it("refuses a step past the cache's capacity, naming the input", () => {
    const cap = program.kvCache.enabled ? program.kvCache.capacity! : 0;
    const f = feeds(g, 2, 3);
    const s = m.createSession(weightSource(f.param));
    s.run(tensors(m, f.inputs));
    const many = new Map([["tokens", ndarray([cap - 1], new Float32Array(cap - 1))]]);
    expect(() => s.step(tensors(m, many, ["step"]))).toThrow(
      new RegExp(
        `input "tokens": 2 cached \\+ ${cap - 1} new positions exceed the KV cache's ${cap} rows`,
      ),
    );
  });
});

describe("the source phase (seq2seq)", () => {
  const g = runPipeline(seq2seqGraph()).graph;
  const m = compile(lower(g));
  const f = feeds(g, 4, 5);

  it("runs once per source: a new source reruns the encoder, the same one does not", () => {
    const s = m.createSession(weightSource(f.param));
    const a = s.run(tensors(m, f.inputs))[0];
    const other = feeds(g, 4, 6, 7).inputs.get("src_tokens")!;
    const b = s.run(tensors(m, new Map([...f.inputs, ["src_tokens", other]])))[0];
    expect(relError(asNd(a), asNd(b))).toBeGreaterThan(0);
    const again = s.run(tensors(m, f.inputs))[0];
    expect(relError(asNd(again), asNd(a))).toBe(0);
  });

  it("refuses a step before any source, and inputs of the wrong shape", () => {
    const s = m.createSession(weightSource(f.param));
    const step = tensors(m, f.inputs, ["step"]);
    expect(() => s.step(step)).toThrow(/step before run: the source has not been fed/);
    const bad = new Map([...f.inputs, ["src_tokens", ndarray([2, 2], [1, 2, 3, 4])]]);
    expect(() => s.run(tensors(m, bad))).toThrow(
      /input "src_tokens": expects i32\[S\], got \[2,2\]/,
    );
    expect(() => s.run(tensors(m, f.inputs).slice(1))).toThrow(/run takes 2 input\(s\)/);
  });

  it("refuses a missing or mis-sized weight, naming the tensor", () => {
    const name = m.model.params[0].name;
    expect(() => m.createSession((n) => (n === name ? undefined : f.param(n)?.data))).toThrow(
      new RegExp(`tensor "${name.replace(/\./g, "\\.")}": missing`),
    );
    expect(() => m.createSession((n) => (n === name ? [1, 2] : f.param(n)?.data))).toThrow(
      /2 values but the model needs/,
    );
  });
});
