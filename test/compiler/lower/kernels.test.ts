/** Each kernel family of the Program interpreter on odd sizes and on T = 1, against the reference
 *  interpreter, and the softmax edge cases through the row_reduction and attention kernels:
 *  large rows (10000…10003), fully masked rows (zeros, never NaN), and NaN or 1e10 in masked
 *  positions, which must not leak; the cached attention kernel on a cache it reads below P and
 *  appends to from P. */
import { describe, expect, it } from "vitest";
import type { Graph } from "../../../compiler/ir/graph.ts";
import { ndarray, type NDArray } from "../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../compiler/ir/parse.ts";
import { createSession } from "../../../compiler/lower/execute.ts";
import { attentionCached } from "../../../compiler/lower/kernels-matmul.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import type { KernelFamily } from "../../../compiler/lower/program.ts";
import { expectClose, nd, randn, run, type Arrays } from "../util.ts";

function runLowered(g: Graph, inputs: Arrays, params: Arrays = {}): NDArray[] {
  return createSession(lower(g), (n) => params[n]).run(new Map(Object.entries(inputs)));
}

/** One graph, lowered, against the reference; returns the lowered outputs. */
function check(text: string, inputs: Arrays, params: Arrays = {}, tol = 1e-12): NDArray[] {
  const g = parseGraph(text);
  const got = runLowered(g, inputs, params);
  const want = run(g, inputs, params);
  got.forEach((o, i) => expectClose(o, want[i], tol));
  return got;
}

function families(text: string): KernelFamily[] {
  return lower(parseGraph(text)).kernels.map((k) => k.family);
}

describe("map", () => {
  const text = `graph @t(%x: f32[T,5], %y: f32[5], %s: f32[]) -> (f32[T,5]) {
  %m = map(%x, %y, %s) {expr="gelu(add(mul($0, $1), tanh($2)))"} : f32[T,5]
  %f = masked_fill(%m, %y) {value=-7} : f32[T,5]
  return %f
}`;
  it.each([1, 3])("broadcasts operands (T = %i)", (t) => {
    expect(families(text)).toEqual(["map", "map"]);
    check(text, { x: randn([t, 5], 1), y: nd([5], [0, 1, 0, 2, 0]), s: nd([], [0.3]) });
  });

  it("causal mask, range, sinusoidal, concat and a reshape copy", () => {
    const g = `graph @t(%x: f32[3,T,7]) -> (f32[3,T,7], f32[T,6], f32[T,21], f32[3,T,9]) {
  %c = causal_mask(%x) : f32[3,T,7]
  %r = range() {start=2, size=T} : i32[T]
  %p = sinusoidal(%r) {dim=6} : f32[T,6]
  %t = transpose(%x) {perm=[1,0,2]} : f32[T,3,7]
  %m = reshape(%t) {shape=[T,21]} : f32[T,21]
  %s = slice(%x) {axis=2, start=1, size=2} : f32[3,T,2]
  %j = concat(%x, %s) {axis=2} : f32[3,T,9]
  return %c, %p, %m, %j
}`;
    for (const t of [1, 5]) check(g, { x: randn([3, t, 7], t) });
  });
});

describe("row_reduction", () => {
  it("softmax along any axis, layer norm with a prologue, reductions (odd sizes)", () => {
    const text = `graph @t(%x: f32[3,T,7], %g: f32[7], %b: f32[7]) -> (f32[3,T,7], f32[3,T,7], f32[3,T,7], f32[1,T,7], f32[3,T,1]) {
  %s0 = softmax(%x) {axis=0} : f32[3,T,7]
  %s2 = softmax(%x) {axis=2} : f32[3,T,7]
  %ln = layer_norm_map(%g, %b, %x, %s2) {eps=0.00001, expr="add($0, $1)"} : f32[3,T,7]
  %r0 = reduce_sum(%x) {axis=0} : f32[1,T,7]
  %r2 = reduce_mean(%x) {axis=2} : f32[3,T,1]
  return %s0, %s2, %ln, %r0, %r2
}`;
    expect(families(text)).toEqual(Array(5).fill("row_reduction"));
    for (const t of [1, 5])
      check(text, { x: randn([3, t, 7], t, 3), g: randn([7], 2), b: randn([7], 3) });
  });

  const scaled = `graph @t(%x: f32[2,T,4], %m: f32[4]) -> (f32[2,T,4]) {
  %p = scale_softmax(%x, %m) {scale=0.5, causal=true} : f32[2,T,4]
  return %p
}`;

  it("large rows: 10000…10003 do not overflow", () => {
    const x = nd([1, 1, 4], [10000, 10001, 10002, 10003]).data;
    const text = scaled.replace("scale=0.5", "scale=1").replace(/2,T/g, "1,T");
    const [p] = check(text, { x: ndarray([1, 1, 4], x), m: nd([4], [0, 0, 0, 0]) });
    // T = 1 against Tk = 4: the causal offset is 3, so every key is visible.
    const e = [0, 1, 2, 3].map((j) => Math.exp(j - 3));
    const z = e.reduce((a, b) => a + b);
    expectClose(
      p,
      e.map((v) => v / z),
    );
  });

  it("a fully masked row gives zeros, and NaN or 1e10 where masked does not leak", () => {
    // Row 0 of T = 4 sees only key 0 (causal), which the key mask hides: nothing visible.
    const x = nd(
      [2, 4, 4],
      Array.from({ length: 32 }, (_, i) => (i % 4 === 3 ? NaN : i % 4 === 2 ? 1e10 : i / 7)),
    );
    const [p] = check(scaled, { x, m: nd([4], [1, 0, 1, 1]) });
    for (const h of [0, 1]) {
      expect(Array.from(p.data.subarray(h * 16, h * 16 + 4))).toEqual([0, 0, 0, 0]);
      for (let i = 1; i < 4; i++)
        expectClose(
          ndarray([4], p.data.subarray(h * 16 + i * 4, h * 16 + i * 4 + 4)),
          [0, 1, 0, 0],
        );
    }
  });
});

describe("matmul", () => {
  const text = `graph @t(%a: f32[2,T,5], %e: f32[T,7], %f: f32[7]) -> (f32[2,T,7], f32[2,T,3]) {
  %w = param() {name="w"} : f32[5,7]
  %v = param() {name="v"} : f32[3,5]
  %y = matmul_epilogue(%a, %w, %f, %e) {transposeB=false, expr="relu(add(add(acc, $0), $1))"} : f32[2,T,7]
  %z = matmul(%a, %v) {transposeB=true} : f32[2,T,3]
  return %y, %z
}`;
  it.each([1, 3])("batch broadcast, either layout, an epilogue with extras (T = %i)", (t) => {
    expect(families(text)).toEqual(["matmul", "matmul"]);
    check(
      text,
      { a: randn([2, t, 5], t), e: randn([t, 7], 5), f: randn([7], 6) },
      { w: randn([5, 7], 7), v: randn([3, 5], 8) },
    );
  });
});

describe("attention", () => {
  const text = `graph @t(%q: f32[T,15], %k: f32[S,15], %v: f32[S,15], %m: f32[S]) -> (f32[T,15], f32[T,15]) {
  %c = attention(%q, %k, %v) {heads=3, scale=0.4, causal=true} : f32[T,15]
  %x = attention(%q, %k, %v, %m) {heads=3, scale=0.4, causal=false} : f32[T,15]
  return %c, %x
}`;
  it.each([
    [1, 7],
    [5, 7],
    [7, 7],
    [4, 1],
  ])("per head, online softmax, causal offset (Tq %i, Tk %i)", (t, s) => {
    expect(families(text)).toEqual(["attention", "attention"]);
    const m = nd(
      [s],
      Array.from({ length: s }, (_, j) => (j % 3 === 1 ? 1 : 0)),
    );
    check(
      text,
      { q: randn([t, 15], t, 2), k: randn([s, 15], s, 2), v: randn([s, 15], 9), m },
      {},
      1e-12,
    );
  });

  const one = `graph @t(%q: f32[T,1], %k: f32[S,1], %v: f32[S,1], %m: f32[S]) -> (f32[T,1]) {
  %x = attention(%q, %k, %v, %m) {heads=1, scale=1, causal=false} : f32[T,1]
  return %x
}`;

  it("large scores: 10000…10003 rescale the accumulator without overflow", () => {
    const [o] = check(one, {
      q: nd([1, 1], [1]),
      k: nd([4, 1], [10000, 10001, 10002, 10003]),
      v: nd([4, 1], [1, 2, 3, 4]),
      m: nd([4], [0, 0, 0, 0]),
    });
    const e = [0, 1, 2, 3].map((j) => Math.exp(j - 3));
    expectClose(o, [e.reduce((a, w, j) => a + w * (j + 1), 0) / e.reduce((a, b) => a + b)]);
  });

  it("all keys masked gives zeros; NaN or 1e10 in masked keys and values does not leak", () => {
    const q = nd([2, 1], [1, -1]);
    const hidden = { k: nd([3, 1], [NaN, 0.5, 1e10]), v: nd([3, 1], [NaN, 2, 1e10]) };
    const g = parseGraph(one);
    const [o] = runLowered(g, { q, ...hidden, m: nd([3], [1, 0, 1]) });
    expectClose(o, [2, 2]); // only key 1 is visible
    const [z] = runLowered(g, { q, ...hidden, m: nd([3], [1, 1, 1]) });
    expect(Array.from(z.data)).toEqual([0, 0]);
  });
});

describe("attention_cached", () => {
  // P = 4 cached positions, T = 3 new ones, 2 heads of 3; caches of 9 rows.
  const [P, T, C, N] = [4, 3, 6, 9];
  const strided = (shape: number[], data: Float64Array, offset = 0, strides?: number[]) => ({
    data,
    offset,
    shape,
    strides: strides ?? [shape[1], 1],
  });
  // New k and v are strided thirds of one [T, 18] buffer, as fuse-qkv leaves them.
  const qkv = randn([T, 3 * C], 1).data;
  const cache = (seed: number) => {
    const a = new Float64Array(N * C).fill(NaN); // rows ≥ P: never read
    a.set(randn([P, C], seed).data);
    return a;
  };
  const [kc, vc] = [cache(2), cache(3)];
  const out = new Float64Array(T * C);
  attentionCached(
    { heads: 2, scale: 0.7 },
    P,
    [
      strided([T, C], qkv, 0, [3 * C, 1]),
      strided([T, C], qkv, C, [3 * C, 1]),
      strided([T, C], qkv, 2 * C, [3 * C, 1]),
      strided([N, C], kc),
      strided([N, C], vc),
    ],
    strided([T, C], out),
  );
  const third = (i: number) =>
    Array.from({ length: T }, (_, r) => [
      ...qkv.subarray(r * 3 * C + i * C, r * 3 * C + (i + 1) * C),
    ]).flat();

  it("attends over cached keys [0, P) and new keys, query i seeing keys up to P + i", () => {
    const keys = (c: Float64Array, i: number) =>
      nd([P + T, C], [...c.subarray(0, P * C), ...third(i)]);
    const [want] = run(
      parseGraph(`graph @t(%q: f32[T,6], %k: f32[S,6], %v: f32[S,6]) -> (f32[T,6]) {
  %a = attention(%q, %k, %v) {heads=2, scale=0.7, causal=true} : f32[T,6]
  return %a
}`),
      { q: nd([T, C], third(0)), k: keys(kc, 1), v: keys(vc, 2) },
    );
    expectClose(ndarray([T, C], out), want, 1e-12);
  });

  it("writes rows [P, P+T) of each cache with the new rows, and nothing else", () => {
    for (const [c, i, seed] of [
      [kc, 1, 2],
      [vc, 2, 3],
    ] as const) {
      expect([...c.subarray(0, P * C)]).toEqual([...randn([P, C], seed).data]);
      expect([...c.subarray(P * C, (P + T) * C)]).toEqual(third(i));
      expect([...c.subarray((P + T) * C)]).toEqual(Array<number>((N - P - T) * C).fill(NaN));
    }
  });
});

describe("gather", () => {
  it("rows of a strided table by ids of any rank", () => {
    const text = `graph @t(%ids: i32[T,2]) -> (f32[T,2,3,2]) {
  %w = param() {name="w"} : f32[7,2,3]
  %t = transpose(%w) {perm=[0,2,1]} : f32[7,3,2]
  %g = gather(%t, %ids) : f32[T,2,3,2]
  return %g
}`;
    expect(families(text)).toEqual(["gather"]);
    for (const t of [1, 3])
      check(
        text,
        {
          ids: nd(
            [t, 2],
            Array.from({ length: 2 * t }, (_, i) => (i * 5) % 7),
          ),
        },
        { w: randn([7, 2, 3], 4) },
      );
  });

  it("an id outside the table is an input error naming the node", () => {
    const g = parseGraph(`graph @t(%ids: i32[T]) -> (f32[T,3]) {
  %w = param() {name="w"} : f32[7,3]
  %g = gather(%w, %ids) : f32[T,3]
  return %g
}`);
    expect(() => runLowered(g, { ids: nd([2], [1, 7]) }, { w: randn([7, 3], 1) })).toThrow(
      /@t %g: gather: index 7 is outside the table's 7 rows/,
    );
  });
});
