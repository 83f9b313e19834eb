/** The KV cache: when lowering keeps one, a prefill followed by steps (of one position or
 *  several) gives exactly the logits of a full forward over the whole sequence; each cached
 *  attention is one kernel that also appends to its caches; the source phase runs once per
 *  source; the decoding graph (the last-position pass) keeps the cache and gives each call's last
 *  row; and a graph that mixes positions any other way is cache-less, saying where and why. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KilnError } from "../../../compiler/errors.ts";
import { nodeData, type Graph } from "../../../compiler/ir/graph.ts";
import { ndarray, type NDArray } from "../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { createSession } from "../../../compiler/lower/execute.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { printProgram } from "../../../compiler/lower/print.ts";
import { kernelsOf, writesOf, type Program } from "../../../compiler/lower/program.ts";
import { lastPosition } from "../../../compiler/passes/last-position.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { randomFeeds, relError } from "../../helpers/feeds.ts";
import { fuseAttentionByHand, gpt2Graph, seq2seqGraph } from "./models.ts";
import { buildRandomGraph, recipeArb } from "./random-graph.ts";

/** Rows [from, to) of every step input (those over T); the source inputs stay whole. */
function rows(inputs: ReadonlyMap<string, NDArray>, p: Program, from: number, to: number) {
  const out = new Map<string, NDArray>();
  for (const id of p.inputs) {
    const b = p.buffers[id];
    const a = inputs.get(b.name!)!;
    if (b.phase !== "step") continue;
    const row = a.data.length / a.shape[0];
    out.set(
      b.name!,
      ndarray([to - from, ...a.shape.slice(1)], a.data.subarray(from * row, to * row)),
    );
  }
  return out;
}

const sources = (inputs: ReadonlyMap<string, NDArray>, p: Program) =>
  new Map(
    p.inputs
      .map((id) => p.buffers[id])
      .filter((b) => b.phase !== "step")
      .map((b) => [b.name!, inputs.get(b.name!)!] as const),
  );

/** Prefill `chunks[0]` positions, then one step per further chunk (of that many new positions),
 *  against one full forward over them all. float64 and the same sums in the same order: exact. */
function expectIncremental(g: Graph, chunks: readonly number[], tol = 0): void {
  const t = chunks.reduce((a, b) => a + b, 0);
  const feeds = randomFeeds(
    g,
    new Map([
      ["T", t],
      ["S", 6],
    ]),
    t,
  );
  const p = lower(g);
  expect(p.kvCache.enabled).toBe(true);
  const full = createSession(p, feeds.param).run(feeds.inputs);
  const s = createSession(p, feeds.param);
  const parts = [
    s.run(new Map([...sources(feeds.inputs, p), ...rows(feeds.inputs, p, 0, chunks[0])])),
  ];
  let at = chunks[0];
  for (const n of chunks.slice(1)) {
    parts.push(s.step(rows(feeds.inputs, p, at, at + n)));
    at += n;
    expect(s.cachedLength).toBe(at);
  }
  full.forEach((want, o) => {
    // An output over T comes a few rows per call; any other (a source result) whole each time.
    const overT = p.buffers[p.outputs[o]].shape[0] === "T";
    const got = overT
      ? ndarray(want.shape, Float64Array.from(parts.flatMap((r) => [...r[o].data])))
      : parts[parts.length - 1][o];
    expect(relError(got, want)).toBeLessThanOrEqual(tol);
  });
}

const ones = (n: number): number[] => Array<number>(n).fill(1);

/** The decoding graph (last-position after `g`): prefill `chunks[0]` positions, then one step per
 *  further chunk; each call's outputs over T are the full forward's row at that call's last
 *  position (`g`'s outputs over T have T on axis 0). Exact, as expectIncremental. */
function expectLastIncremental(g: Graph, chunks: readonly number[]): void {
  const t = chunks.reduce((a, b) => a + b, 0);
  const bindings = new Map([
    ["T", t],
    ["S", 6],
  ]);
  const feeds = randomFeeds(g, bindings, t);
  const full = createSession(lower(g), feeds.param).run(feeds.inputs);
  const p = lower(lastPosition.run(g).graph);
  expect(p.kvCache.enabled).toBe(true);
  const s = createSession(p, feeds.param);
  let at = 0;
  chunks.forEach((n, i) => {
    const ins = rows(feeds.inputs, p, at, at + n);
    const got = i === 0 ? s.run(new Map([...sources(feeds.inputs, p), ...ins])) : s.step(ins);
    at += n;
    full.forEach((want, o) => {
      if (nodeData(g, g.outputs[o]).type.shape[0] !== "T") return;
      const row = want.data.length / want.shape[0];
      const last = ndarray(
        [1, ...want.shape.slice(1)],
        want.data.subarray((at - 1) * row, at * row),
      );
      expect(got[o].shape).toEqual(last.shape);
      expect(relError(got[o], last)).toBe(0);
    });
  });
}

const FUSED = [
  ["gpt2, attention fused by hand", () => fuseAttentionByHand(gpt2Graph())],
  ["seq2seq, attention fused by hand", () => fuseAttentionByHand(seq2seqGraph())],
  ["gpt2, default pipeline", () => runPipeline(gpt2Graph()).graph],
  ["seq2seq, default pipeline", () => runPipeline(seq2seqGraph()).graph],
] as const;

describe.each(FUSED)("%s", (_name, make) => {
  const g = make();

  it("prefill 3 tokens + 4 single-token steps = one forward over 7", () => {
    expectIncremental(g, [3, ...ones(4)]);
  });

  it("prefill 1 token (T = 1), then single-token steps up to the context", () => {
    expectIncremental(g, ones(16));
  });

  it("steps of several new tokens at once, each seeing the cache and itself causally", () => {
    expectIncremental(g, [2, 3, 1, 4]);
    expectIncremental(g, [1, 5]);
  });

  it("a prefill of the whole context (P = 0 throughout)", () => {
    expectIncremental(g, [16]);
  });

  it("the decoding graph (last position only) keeps the cache: each call's last row", () => {
    expectLastIncremental(g, [3, ...ones(4)]);
    expectLastIncremental(g, [2, 3, 1, 4]);
    expectLastIncremental(g, ones(16));
  });

  it("caches every causal self-attention in one kernel that reads k, v in place and appends", () => {
    const p = lower(g);
    if (!p.kvCache.enabled) return expect.fail(p.kvCache.reason);
    const { past, capacity, entries } = p.kvCache;
    expect(entries.length).toBe(2);
    for (const e of entries) {
      const ks = p.kernels.filter((k) => k.node === e.attention);
      expect(ks.map((k) => [k.phase, k.family, k.body])).toEqual([
        ["step", "attention", { kind: "attention_cached", heads: 3, scale: 8 ** -0.5, past }],
      ]);
      const [k] = ks;
      expect(k.alsoWrites).toEqual([e.k, e.v]);
      // q, k, v over the T new rows, read where they were computed; then the caches, whole.
      expect(k.inputs.map((v) => v.shape)).toEqual([
        ["T", 24],
        ["T", 24],
        ["T", 24],
        [capacity, 24],
        [capacity, 24],
      ]);
      expect(k.inputs.slice(3).map((v) => v.buffer)).toEqual([e.k, e.v]);
      for (const v of k.inputs.slice(0, 3)) expect(p.buffers[v.buffer].role).toBe("temp");
      for (const id of [e.k, e.v]) {
        expect(p.buffers[id]).toMatchObject({
          role: "state",
          phase: "step",
          shape: [capacity, 24],
        });
        // No other kernel touches a cache: nothing copies into it, nothing else reads it.
        const touching = p.kernels.filter(
          (x) => writesOf(x).includes(id) || x.inputs.some((v) => v.buffer === id),
        );
        expect(touching).toEqual([k]);
      }
    }
    const ranges = kernelsOf(p, "step").filter((k) => k.body.kind === "range");
    expect(ranges.map((k) => k.body)).toEqual(ranges.map(() => ({ kind: "range", start: "P" })));
  });
});

describe("a single cached attention", () => {
  const g = parseGraph(`graph @t(%x: f32[T,6]) -> (f32[T,6]) {
  dim T <= 12 "the test's context"
  %w = param() {name="w"} : f32[6,18]
  %qkv = matmul(%x, %w) {transposeB=false} : f32[T,18]
  %q = slice(%qkv) {axis=1, start=0, size=6} : f32[T,6]
  %k = slice(%qkv) {axis=1, start=6, size=6} : f32[T,6]
  %v = slice(%qkv) {axis=1, start=12, size=6} : f32[T,6]
  %a = attention(%q, %k, %v) {heads=2, scale=0.6, causal=true} : f32[T,6]
  return %a
}`);

  it("is two kernels, the attention reading q, k and v as strided thirds", () => {
    const p = lower(g);
    expect(printProgram(p).split("\n").slice(-3, -1)).toEqual([
      "  k0_matmul  matmul  step  %qkv ← b0, b1 → b2 f32[T,18]  [matmul then acc]",
      "  k1_attention  attention  step  %a ← b2[T,6]·[18,1], b2[T,6]+6·[18,1], b2[T,6]+12·[18,1], b3, b4 → b5 f32[T,6] (also b3, b4)  [attention 2 heads scale 0.6 causal, P cached]",
    ]);
  });

  it.each([[[1, 1, 1]], [[4, 2, 3, 3]], [[5, 7]], [[1, 11]]])(
    "prefill then steps of %j positions = one forward",
    (chunks) => expectIncremental(g, chunks),
  );
});

describe("seq2seq", () => {
  const g = runPipeline(seq2seqGraph()).graph;
  const p = lower(g);

  it("runs the encoder and the cross-attention K/V projections once per source", () => {
    const source = kernelsOf(p, "source");
    const covered = source.flatMap((k) => k.covers);
    expect(covered).toEqual(expect.arrayContaining(["memory", "k_mm", "v_mm", "k_mm_1", "v_mm_1"]));
    for (const e of p.kvCache.enabled ? p.kvCache.entries : [])
      expect(
        p.kernels.find((k) => k.node === e.attention && k.body.kind === "attention_cached")!.phase,
      ).toBe("step");
    const feeds = randomFeeds(
      g,
      new Map([
        ["T", 4],
        ["S", 6],
      ]),
    );
    const ran: string[] = [];
    const s = createSession(p, feeds.param, { onKernel: (k) => ran.push(k.phase) });
    s.run(rows(feeds.inputs, p, 0, 2).set("src_tokens", feeds.inputs.get("src_tokens")!));
    s.step(rows(feeds.inputs, p, 2, 3));
    s.step(rows(feeds.inputs, p, 3, 4));
    const count = (phase: string) => ran.filter((x) => x === phase).length;
    expect(count("source")).toBe(source.length);
    expect(count("step")).toBe(3 * kernelsOf(p, "step").length);
    s.run(feeds.inputs); // the same source: not run again
    expect(count("source")).toBe(source.length);
    s.run(
      randomFeeds(
        g,
        new Map([
          ["T", 4],
          ["S", 5],
        ]),
        2,
      ).inputs,
    ); // a new one
    expect(count("source")).toBe(2 * source.length);
  });

  it("keeps the source results the step reads as state, outside the arena", () => {
    const kept = p.buffers.filter((b) => b.role === "state" && b.phase === "source");
    expect(kept.length).toBeGreaterThan(0);
    for (const b of kept)
      expect(
        p.kernels.some((k) => k.phase === "step" && k.inputs.some((v) => v.buffer === b.id)),
      ).toBe(true);
  });

  it("refuses a step that feeds the source again, or one before any source", () => {
    const feeds = randomFeeds(
      g,
      new Map([
        ["T", 2],
        ["S", 3],
      ]),
    );
    const s = createSession(p, feeds.param);
    expect(() => s.step(rows(feeds.inputs, p, 0, 1))).toThrow(/before run/);
    s.run(feeds.inputs);
    expect(() => s.step(feeds.inputs)).toThrow(/once per source/);
  });
});

describe("cache-less programs", () => {
  const reason = (text: string) => {
    const p = lower(parseGraph(text));
    return p.kvCache.enabled ? "enabled" : p.kvCache.reason;
  };
  const graph = (body: string, out: string) => `graph @t(%x: f32[T,4]) -> (${out}) {
  dim T <= 8 "the test's context"
${body}
}`;

  it("a reduce over T", () => {
    expect(
      reason(graph(`  %s = reduce_sum(%x) {axis=0} : f32[1,4]\n  return %s`, "f32[1,4]")),
    ).toBe("%s (<ir>:3): reduce_sum: it reduces along T, which mixes positions");
  });

  it("a slice along T, except of the last position", () => {
    const text = graph(
      `  %y = slice(%x) {axis=0, start=-2, size=1} : f32[1,4]\n  return %y`,
      "f32[1,4]",
    );
    expect(reason(text)).toBe("%y (<ir>:3): slice: it slices along T, which mixes positions");
    expect(reason(text.replace("start=-2", "start=-1"))).toBe("enabled");
    expect(reason(text.replace("start=-2", "start=0"))).toMatch(/it slices along T/);
  });

  it("a transpose that moves T", () => {
    expect(
      reason(graph(`  %y = transpose(%x) {perm=[1,0]} : f32[4,T]\n  return %y`, "f32[4,T]")),
    ).toBe("%y (<ir>:3): transpose: it moves T from axis 0 to axis 1");
  });

  it("a non-causal self-attention", () => {
    const text = graph(
      `  %a = attention(%x, %x, %x) {heads=2, scale=0.5, causal=false} : f32[T,4]\n  return %a`,
      "f32[T,4]",
    );
    expect(reason(text)).toMatch(/^%a \(<ir>:3\): attention: a non-causal self-attention/);
    expect(reason(text.replace("causal=false", "causal=true"))).toBe("enabled");
  });

  it("scores over T × T, as an unfused graph has them", () => {
    const p = lower(gpt2Graph());
    expect(p.kvCache).toEqual({
      enabled: false,
      reason: expect.stringMatching(/T/) as unknown as string,
    });
    const feeds = randomFeeds(gpt2Graph(), new Map([["T", 2]]));
    expect(() => createSession(p, feeds.param).step(feeds.inputs)).toThrow(KilnError);
  });

  it("a cache with no bound on T to size it", () => {
    const text = `graph @t(%x: f32[T,4]) -> (f32[T,4]) {
  %a = attention(%x, %x, %x) {heads=2, scale=0.5, causal=true} : f32[T,4]
  return %a
}`;
    expect(reason(text)).toBe("T has no bound to size the KV cache with");
  });
});

describe("positions", () => {
  it("only a range over T starts at P; one over another dim of a step input does not", () => {
    const g = parseGraph(`graph @t(%x: f32[T,S]) -> (f32[T,S]) {
  dim T <= 8 "the test's context"
  %rs = range() {start=0, size=S} : i32[S]
  %ps = sinusoidal(%rs) {dim=2} : f32[S,2]
  %ss = reduce_sum(%ps) {axis=1} : f32[S,1]
  %s1 = reshape(%ss) {shape=[S]} : f32[S]
  %rt = range() {start=3, size=T} : i32[T]
  %pt = sinusoidal(%rt) {dim=2} : f32[T,2]
  %t1 = slice(%pt) {axis=1, start=0, size=1} : f32[T,1]
  %y = add(%x, %s1) : f32[T,S]
  %z = add(%y, %t1) : f32[T,S]
  return %z
}`);
    const p = lower(g);
    expect(p.kernels.filter((k) => k.body.kind === "range").map((k) => [k.node, k.body])).toEqual([
      ["rs", { kind: "range", start: 0 }],
      ["rt", { kind: "range", start: "P+3" }],
    ]);
    expectIncremental(g, [2, 1, 1, 1, 1]);
  });
});

describe("limits", () => {
  it("a step past the cache's capacity is an input error", () => {
    const g = fuseAttentionByHand(gpt2Graph(1));
    const feeds = randomFeeds(g, new Map([["T", 16]]));
    const s = createSession(lower(g), feeds.param);
    s.run(feeds.inputs);
    expect(() => s.step(new Map([["tokens", ndarray([1], [3])]]))).toThrow(
      /16 cached \+ 1 new positions exceed the KV cache's 16 rows/,
    );
  });
});

describe("random graphs with a cache", () => {
  it("prefill then single steps = one forward", () => {
    let cached = 0;
    fc.assert(
      fc.property(recipeArb, fc.boolean(), fc.integer({ min: 2, max: 6 }), (recipe, src, t) => {
        const g = runPipeline(buildRandomGraph(recipe, src)).graph;
        if (!lower(g).kvCache.enabled) return;
        cached++;
        const first = 1 + (recipe.length % (t - 1));
        expectIncremental(g, [first, ...ones(t - first)]);
      }),
      { numRuns: 150, seed: 5 },
    );
    expect(cached).toBeGreaterThan(30);
  });

  it("their decoding graphs (last position only): each call's last row", () => {
    let cached = 0;
    fc.assert(
      fc.property(recipeArb, fc.boolean(), fc.integer({ min: 2, max: 6 }), (recipe, src, t) => {
        const g = runPipeline(buildRandomGraph(recipe, src)).graph;
        if (!lower(g).kvCache.enabled) return;
        cached++;
        const first = 1 + (recipe.length % (t - 1));
        expectLastIncremental(g, [first, ...ones(t - first)]);
      }),
      { numRuns: 150, seed: 5 },
    );
    expect(cached).toBeGreaterThan(30);
  });
});
