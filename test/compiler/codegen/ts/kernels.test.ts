/** Every kernel family's generated TypeScript against the Program interpreter, on odd sizes and
 *  T = 1, and the softmax edge cases through the row_reduction and attention kernels: large rows
 *  (10000…10003), fully masked rows (zeros, never NaN), NaN or 1e10 in masked positions (they
 *  must not leak); the cached attention kernel against a full forward. Inputs and weights are
 *  float32 values, so the generated code (float32 storage, float64 arithmetic) differs from the
 *  float64 interpreter only by the float32 rounding of intermediate results. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../../compiler/ir/parse.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import { nd, randn as randn64, type Arrays } from "../../util.ts";
import { pair, relError } from "./harness.ts";

const f32 = (a: NDArray): NDArray => ndarray(a.shape, Float32Array.from(a.data));
const randn = (shape: number[], seed: number, scale = 1) => f32(randn64(shape, seed, scale));

/** The graph lowered, generated and interpreted on the same inputs; returns the generated outputs. */
function check(
  text: string,
  inputs: Arrays,
  params: Arrays = {},
  tol = 1e-6,
  maxDims = new Map([
    ["T", 8],
    ["S", 8],
  ]),
): NDArray[] {
  const p = pair(parseGraph(text), (n) => params[n], { maxDims });
  const { got, want } = p.run(new Map(Object.entries(inputs)));
  expect(got.length).toBe(want.length);
  got.forEach((o, i) => expect(relError(o, want[i]), `output ${i}`).toBeLessThanOrEqual(tol));
  return got;
}

const families = (text: string) => lower(parseGraph(text)).kernels.map((k) => k.body.kind);

describe("map", () => {
  const text = `graph @t(%x: f32[T,5], %y: f32[5], %s: f32[]) -> (f32[T,5]) {
  %m = map(%x, %y, %s) {expr="gelu(add(mul($0, $1), tanh($2)))"} : f32[T,5]
  %f = masked_fill(%m, %y) {value=-7} : f32[T,5]
  return %f
}`;
  it.each([1, 3])("broadcasts operands (T = %i)", (t) => {
    expect(families(text)).toEqual(["expr", "masked_fill"]);
    check(text, { x: randn([t, 5], 1), y: nd([5], [0, 1, 0, 2, 0]), s: nd([], [0.3]) });
  });

  it("causal mask, range, sinusoidal, concat, a reshape copy and a transposed copy", () => {
    const g = `graph @t(%x: f32[3,T,7]) -> (f32[3,T,7], f32[T,6], f32[T,21], f32[3,T,9], f32[7,T,3]) {
  %c = causal_mask(%x) : f32[3,T,7]
  %r = range() {start=2, size=T} : i32[T]
  %p = sinusoidal(%r) {dim=6} : f32[T,6]
  %t = transpose(%x) {perm=[1,0,2]} : f32[T,3,7]
  %m = reshape(%t) {shape=[T,21]} : f32[T,21]
  %s = slice(%x) {axis=2, start=1, size=2} : f32[3,T,2]
  %j = concat(%x, %s) {axis=2} : f32[3,T,9]
  %u = transpose(%x) {perm=[2,1,0]} : f32[7,T,3]
  return %c, %p, %m, %j, %u
}`;
    expect(new Set(families(g))).toEqual(
      new Set(["causal_mask", "range", "sinusoidal", "copy", "concat"]),
    );
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
    expect(families(text)).toEqual(["softmax", "softmax", "layer_norm", "reduce", "reduce"]);
    for (const t of [1, 5])
      check(text, { x: randn([3, t, 7], t, 3), g: randn([7], 2), b: randn([7], 3) });
  });

  const scaled = `graph @t(%x: f32[2,T,4], %m: f32[4]) -> (f32[2,T,4]) {
  %p = scale_softmax(%x, %m) {scale=0.5, causal=true} : f32[2,T,4]
  return %p
}`;

  it("large rows: 10000…10003 do not overflow", () => {
    const text = scaled.replace("scale=0.5", "scale=1").replace(/2,T/g, "1,T");
    const [p] = check(text, {
      x: nd([1, 1, 4], [10000, 10001, 10002, 10003]),
      m: nd([4], [0, 0, 0, 0]),
    });
    const e = [0, 1, 2, 3].map((j) => Math.exp(j - 3));
    const z = e.reduce((a, b) => a + b);
    e.forEach((v, j) => expect(p.data[j]).toBeCloseTo(v / z, 6));
  });

  it("a fully masked row gives zeros, and NaN or 1e10 where masked does not leak", () => {
    const x = nd(
      [2, 4, 4],
      Array.from({ length: 32 }, (_, i) => (i % 4 === 3 ? NaN : i % 4 === 2 ? 1e10 : i / 7)),
    );
    const [p] = check(scaled, { x, m: nd([4], [1, 0, 1, 1]) });
    for (const h of [0, 1]) {
      expect(Array.from(p.data.subarray(h * 16, h * 16 + 4))).toEqual([0, 0, 0, 0]);
      for (let i = 1; i < 4; i++)
        expect(Array.from(p.data.subarray(h * 16 + i * 4, h * 16 + i * 4 + 4))).toEqual([
          0, 1, 0, 0,
        ]);
    }
  });
});

describe("matmul", () => {
  const text = `graph @t(%a: f32[2,T,5], %e: f32[T,7], %f: f32[7], %x: f32[T,5]) -> (f32[2,T,7], f32[2,T,3], f32[T,7], f32[T,3], f32[T,T]) {
  %w = param() {name="w"} : f32[5,7]
  %v = param() {name="v"} : f32[3,5]
  %y = matmul_epilogue(%a, %w, %f, %e) {transposeB=false, expr="relu(add(add(acc, $0), $1))"} : f32[2,T,7]
  %z = matmul(%a, %v) {transposeB=true} : f32[2,T,3]
  %y2 = matmul_epilogue(%x, %w, %f, %e) {transposeB=false, expr="relu(add(add(acc, $0), $1))"} : f32[T,7]
  %z2 = matmul(%x, %v) {transposeB=true} : f32[T,3]
  %s = matmul(%x, %x) {transposeB=true} : f32[T,T]
  return %y, %z, %y2, %z2, %s
}`;
  it.each([1, 3, 9])(
    "batched and strided, packed weights in either layout, epilogues with extras (T = %i)",
    (t) => {
      expect(families(text)).toEqual(Array(5).fill("matmul"));
      check(
        text,
        { a: randn([2, t, 5], t), e: randn([t, 7], 5), f: randn([7], 6), x: randn([t, 5], 4) },
        { w: randn([5, 7], 7), v: randn([3, 5], 8) },
        1e-6,
        new Map([["T", 9]]),
      );
    },
  );
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
    check(text, { q: randn([t, 15], t, 2), k: randn([s, 15], s, 2), v: randn([s, 15], 9), m });
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
    expect(o.data[0]).toBeCloseTo(
      e.reduce((a, w, j) => a + w * (j + 1), 0) / e.reduce((a, b) => a + b),
      6,
    );
  });

  it("all keys masked gives zeros; NaN or 1e10 in masked keys and values does not leak", () => {
    const q = nd([2, 1], [1, -1]);
    const hidden = { k: nd([3, 1], [NaN, 0.5, 1e10]), v: nd([3, 1], [NaN, 2, 1e10]) };
    const [o] = check(one, { q, ...hidden, m: nd([3], [1, 0, 1]) });
    expect(Array.from(o.data)).toEqual([2, 2]); // only key 1 is visible
    const [z] = check(one, { q, ...hidden, m: nd([3], [1, 1, 1]) });
    expect(Array.from(z.data)).toEqual([0, 0]);
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
    for (const t of [1, 3]) {
      const ids = nd(
        [t, 2],
        Array.from({ length: 2 * t }, (_, i) => (i * 5) % 7),
      );
      check(text, { ids }, { w: randn([7, 2, 3], 4) }, 0);
    }
  });

  it("an id outside the table is an input error naming the node", () => {
    const text = `graph @t(%ids: i32[T]) -> (f32[T,3]) {
  %w = param() {name="w"} : f32[7,3]
  %g = gather(%w, %ids) : f32[T,3]
  return %g
}`;
    expect(() => check(text, { ids: nd([2], [1, 7]) }, { w: randn([7, 3], 1) })).toThrow(
      /@t %g: gather: index 7 is outside the table's 7 rows/,
    );
  });
});

describe("masking, as a property", () => {
  /** Random sizes, heads, scale, causal or not, a random key mask; masked keys (and their values,
   *  and masked scores) hold NaN or 1e10. Nothing hidden may reach an output: all are finite. */
  const shapes = fc.record({
    heads: fc.integer({ min: 1, max: 3 }),
    d: fc.integer({ min: 1, max: 5 }),
    tq: fc.integer({ min: 1, max: 7 }),
    tk: fc.integer({ min: 1, max: 7 }),
    causal: fc.boolean(),
    scale: fc.double({ min: 0.05, max: 3, noNaN: true }),
    seed: fc.nat(1000),
    mask: fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }),
  });
  const poison = (i: number) => (i % 2 ? NaN : 1e10);

  it("attention: hidden keys never leak, fully hidden queries give zeros", () => {
    fc.assert(
      fc.property(shapes, ({ heads, d, tq, tk, causal, scale, seed, mask }) => {
        const c = heads * d;
        const text = `graph @t(%q: f32[T,${c}], %k: f32[S,${c}], %v: f32[S,${c}], %m: f32[S]) -> (f32[T,${c}]) {
  %x = attention(%q, %k, %v, %m) {heads=${heads}, scale=${scale}, causal=${causal}} : f32[T,${c}]
  return %x
}`;
        const m = mask.slice(0, tk).map((b) => (b ? 1 : 0));
        const hide = (a: NDArray) =>
          ndarray(
            a.shape,
            a.data.map((x, i) => (m[Math.floor(i / c)] ? poison(i) : x)),
          );
        const [o] = check(text, {
          q: randn([tq, c], seed, 2),
          k: hide(randn([tk, c], seed + 1, 2)),
          v: hide(randn([tk, c], seed + 2)),
          m: nd([tk], m),
        });
        expect(o.data.every(Number.isFinite)).toBe(true);
      }),
      { numRuns: 60, seed: 5 },
    );
  });

  it("scale_softmax: hidden scores never leak, fully hidden rows give zeros", () => {
    fc.assert(
      fc.property(shapes, ({ heads, tq, tk, causal, scale, seed, mask }) => {
        const text = `graph @t(%x: f32[${heads},T,S], %m: f32[S]) -> (f32[${heads},T,S]) {
  %p = scale_softmax(%x, %m) {scale=${scale}, causal=${causal}} : f32[${heads},T,S]
  return %p
}`;
        const m = mask.slice(0, tk).map((b) => (b ? 1 : 0));
        const x = randn([heads, tq, tk], seed, 4);
        const hidden = ndarray(
          x.shape,
          x.data.map((v, i) => (m[i % tk] ? poison(i) : v)),
        );
        const [p] = check(text, { x: hidden, m: nd([tk], m) });
        expect(p.data.every(Number.isFinite)).toBe(true);
        for (let r = 0; r < heads * tq; r++) {
          const row = p.data.subarray(r * tk, (r + 1) * tk);
          const sum = row.reduce((a, b) => a + b, 0);
          expect(sum === 0 || Math.abs(sum - 1) < 1e-5).toBe(true);
        }
      }),
      { numRuns: 60, seed: 6 },
    );
  });
});
