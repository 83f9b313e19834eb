/** The row_reduction family's WGSL kernels (softmax, layer_norm, reduce) against the Program
 *  interpreter on the test device: odd sizes, T = 1, rows longer than the workgroup (3072,
 *  50257), reductions over a middle axis (strided rows), both layer_norm paths (row held in
 *  registers, Welford), and the softmax edge cases — huge values (10000…10003), fully masked rows
 *  (zeros), NaN and 1e10 where hidden by the mask operand or by the causal rule (they must not
 *  leak), the causal offset Tk − Tq of either sign. Limits profiles shrunk on purpose exercise a
 *  folded dispatch, chunked buffers and a small workgroup. Tolerance: 1e-4 relative (f32). */
import { describe, expect, it } from "vitest";
import { withLimits, type Limits } from "../../../../compiler/codegen/wgsl/limits.ts";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../../compiler/ir/parse.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import { nd, randn as randn64, type Arrays } from "../../util.ts";
import { testGpu } from "../../../helpers/gpu.ts";
import { relError, wgslPair, type WgslPair } from "./harness.ts";

const gpu = await testGpu();

const f32 = (a: NDArray): NDArray => ndarray(a.shape, Float32Array.from(a.data));
const randn = (shape: number[], seed: number, scale = 1) => f32(randn64(shape, seed, scale));

interface CheckOptions {
  readonly limits?: Partial<Limits>;
  readonly maxDims?: ReadonlyMap<string, number>;
  readonly tol?: number;
}

/** The graph lowered, emitted, run on the device and interpreted on the same inputs; returns the
 *  device's outputs and the pair (for its program and kernels). */
async function check(
  text: string,
  inputs: Arrays,
  o: CheckOptions = {},
): Promise<{ got: NDArray[]; pair: WgslPair }> {
  const maxDims =
    o.maxDims ??
    new Map([
      ["T", 8],
      ["S", 8],
    ]);
  const limits = withLimits(gpu!.limits, o.limits ?? {});
  const pair = await wgslPair(gpu!, parseGraph(text), () => undefined, { maxDims, limits });
  expect(pair.model.messages).toEqual([]);
  const { got, want } = await pair.run(new Map(Object.entries(inputs)));
  expect(got.length).toBe(want.length);
  got.forEach((g, i) =>
    expect(relError(g, want[i]), `output ${i}`).toBeLessThanOrEqual(o.tol ?? 1e-4),
  );
  return { got, pair };
}

const families = (text: string) => lower(parseGraph(text)).kernels.map((k) => k.body.kind);
const sourceOf = (p: WgslPair, kind: string): string[] =>
  p.wgsl.kernels.filter((_, i) => p.program.kernels[i].body.kind === kind).map((k) => k.source);

describe.skipIf(!gpu)("wgsl row_reduction", () => {
  const mixed = `graph @t(%x: f32[3,T,7], %g: f32[7], %b: f32[7]) -> (f32[3,T,7], f32[3,T,7], f32[3,T,7], f32[1,T,7], f32[3,T,1], f32[3,1,7]) {
  %s0 = softmax(%x) {axis=0} : f32[3,T,7]
  %s2 = softmax(%x) {axis=2} : f32[3,T,7]
  %ln = layer_norm_map(%g, %b, %x, %s2) {eps=0.00001, expr="add($0, $1)"} : f32[3,T,7]
  %r0 = reduce_sum(%x) {axis=0} : f32[1,T,7]
  %r2 = reduce_mean(%x) {axis=2} : f32[3,T,1]
  %r1 = reduce_mean(%x) {axis=1} : f32[3,1,7]
  return %s0, %s2, %ln, %r0, %r2, %r1
}`;

  it.each([1, 2, 5])(
    "softmax along any axis, layer norm with a prologue, reduce along first, middle and last axes (T = %i)",
    async (t) => {
      expect(families(mixed)).toEqual([
        "softmax",
        "softmax",
        "layer_norm",
        "reduce",
        "reduce",
        "reduce",
      ]);
      await check(mixed, { x: randn([3, t, 7], t, 3), g: randn([7], 2), b: randn([7], 3) });
    },
  );

  it("the same kernels under a shrunk profile: folded dispatch, chunked buffers, 32 invocations", async () => {
    const { pair } = await check(
      mixed,
      { x: randn([3, 8, 7], 11, 3), g: randn([7], 2), b: randn([7], 3) },
      {
        limits: {
          maxComputeWorkgroupsPerDimension: 8,
          maxStorageBufferBindingSize: 256,
          maxComputeInvocationsPerWorkgroup: 48,
        },
      },
    );
    // The shrunk profile is in effect: chunk accessors are used and no workgroup exceeds 32.
    expect(pair.wgsl.kernels.some((k) => k.source.includes("fn ld_buf"))).toBe(true);
    for (const k of pair.wgsl.kernels) expect(k.workgroupSize).toBeLessThanOrEqual(32);
  });

  it("rows longer than the workgroup: 3072 and 50257", async () => {
    const text = `graph @t(%x: f32[T,3072], %y: f32[T,50257], %g: f32[3072], %b: f32[3072]) -> (f32[T,3072], f32[T,50257], f32[T,3072], f32[T,1], f32[T,1]) {
  %s = softmax(%x) {axis=1} : f32[T,3072]
  %v = softmax(%y) {axis=1} : f32[T,50257]
  %ln = layer_norm(%x, %g, %b) {eps=0.00001} : f32[T,3072]
  %r = reduce_sum(%x) {axis=1} : f32[T,1]
  %m = reduce_mean(%y) {axis=1} : f32[T,1]
  return %s, %v, %ln, %r, %m
}`;
    const { pair } = await check(
      text,
      {
        x: randn([2, 3072], 1, 4),
        y: randn([2, 50257], 2, 8),
        g: randn([3072], 3),
        b: randn([3072], 4),
      },
      { maxDims: new Map([["T", 2]]) },
    );
    for (const k of pair.wgsl.kernels) expect(k.workgroupSize).toBe(256);
    expect(sourceOf(pair, "layer_norm")[0]).toContain("var held: array<f32, 12>");
  });

  it("layer norm with a large offset, held in registers and by Welford (small workgroup)", async () => {
    const text = `graph @t(%x: f32[T,3072], %r: f32[T,3072], %g: f32[3072], %b: f32[3072]) -> (f32[T,3072]) {
  %ln = layer_norm_map(%g, %b, %x, %r) {eps=0.00001, expr="add($0, $1)"} : f32[T,3072]
  return %ln
}`;
    // Offset by 100: a one-pass E[x²] − E[x]² variance would lose about 1e-3 here.
    const x = randn([3, 3072], 5);
    x.data.forEach((v, i) => (x.data[i] = v + 100));
    const inputs = { x, r: randn([3, 3072], 6), g: randn([3072], 7), b: randn([3072], 8) };
    const maxDims = new Map([["T", 3]]);
    const held = await check(text, inputs, { maxDims });
    expect(sourceOf(held.pair, "layer_norm")[0]).toContain("var held");
    const welford = await check(text, inputs, {
      maxDims,
      limits: { maxComputeInvocationsPerWorkgroup: 32 },
    });
    expect(sourceOf(welford.pair, "layer_norm")[0]).toContain("Welford");
    expect(sourceOf(welford.pair, "layer_norm")[0]).not.toContain("var held");
  });

  it("layer norm over a symbolic axis (Welford) and reductions over a long middle axis", async () => {
    const text = `graph @t(%x: f32[3,T], %g: f32[T], %b: f32[T], %y: f32[2,T,5]) -> (f32[3,T], f32[2,1,5], f32[2,1,5]) {
  %ln = layer_norm(%x, %g, %b) {eps=0.001} : f32[3,T]
  %s = reduce_sum(%y) {axis=1} : f32[2,1,5]
  %m = reduce_mean(%y) {axis=1} : f32[2,1,5]
  return %ln, %s, %m
}`;
    for (const t of [1, 6, 301]) {
      const { pair } = await check(
        text,
        { x: randn([3, t], t, 2), g: randn([t], 1), b: randn([t], 2), y: randn([2, t, 5], 3) },
        { maxDims: new Map([["T", 301]]) },
      );
      expect(sourceOf(pair, "layer_norm")[0]).toContain("Welford");
      expect(sourceOf(pair, "reduce")[0]).toContain("neighbouring columns");
    }
  });

  const scaled = `graph @t(%x: f32[2,T,4], %m: f32[4]) -> (f32[2,T,4]) {
  %p = scale_softmax(%x, %m) {scale=0.5, causal=true} : f32[2,T,4]
  return %p
}`;

  it("huge values: 10000…10003 do not overflow", async () => {
    const text = scaled.replace("scale=0.5", "scale=1").replace(/2,T/g, "1,T");
    const { got } = await check(text, {
      x: nd([1, 1, 4], [10000, 10001, 10002, 10003]),
      m: nd([4], [0, 0, 0, 0]),
    });
    const e = [0, 1, 2, 3].map((j) => Math.exp(j - 3));
    const z = e.reduce((a, b) => a + b);
    e.forEach((v, j) => expect(got[0].data[j]).toBeCloseTo(v / z, 5));
  });

  it("a fully masked row gives zeros; NaN or 1e10 hidden by mask and causal rule do not leak", async () => {
    const x = nd(
      [2, 4, 4],
      Array.from({ length: 32 }, (_, i) => (i % 4 === 3 ? NaN : i % 4 === 2 ? 1e10 : i / 7)),
    );
    const { got } = await check(scaled, { x, m: nd([4], [1, 0, 1, 1]) });
    const p = got[0];
    for (const h of [0, 1]) {
      expect(Array.from(p.data.subarray(h * 16, h * 16 + 4))).toEqual([0, 0, 0, 0]);
      for (let i = 1; i < 4; i++)
        expect(Array.from(p.data.subarray(h * 16 + i * 4, h * 16 + i * 4 + 4))).toEqual([
          0, 1, 0, 0,
        ]);
    }
  });

  it("NaN and 1e10 hidden by the mask operand alone do not leak; an all-ones mask gives zeros", async () => {
    const text = `graph @t(%x: f32[3,5], %m: f32[5]) -> (f32[3,5]) {
  %p = scale_softmax(%x, %m) {scale=2, causal=false} : f32[3,5]
  return %p
}`;
    const x = nd(
      [3, 5],
      Array.from({ length: 15 }, (_, i) => (i % 5 === 0 ? NaN : i % 5 === 3 ? 1e10 : i / 5)),
    );
    const { got } = await check(text, { x, m: nd([5], [1, 0, 0, 1, 0]) });
    for (const v of got[0].data) expect(Number.isFinite(v)).toBe(true);
    for (let r = 0; r < 3; r++) {
      expect(got[0].data[r * 5]).toBe(0);
      expect(got[0].data[r * 5 + 3]).toBe(0);
      const row = Array.from(got[0].data.subarray(r * 5, r * 5 + 5));
      expect(row.reduce((a, b) => a + b)).toBeCloseTo(1, 5);
    }
    const all = await check(text, { x, m: nd([5], [1, 1, 1, 1, 1]) });
    expect(Array.from(all.got[0].data)).toEqual(Array(15).fill(0));
  });

  it("NaN and 1e10 hidden by the causal rule alone do not leak", async () => {
    const text = `graph @t(%x: f32[2,T,T]) -> (f32[2,T,T]) {
  %p = scale_softmax(%x) {scale=0.5, causal=true} : f32[2,T,T]
  return %p
}`;
    const t = 5;
    const x = nd(
      [2, t, t],
      Array.from({ length: 2 * t * t }, (_, n) => {
        const [i, j] = [Math.floor(n / t) % t, n % t];
        return j > i ? (j % 2 ? NaN : 1e10) : Math.sin(n);
      }),
    );
    const { got } = await check(text, { x });
    for (let r = 0; r < 2 * t; r++) {
      const i = r % t;
      const row = Array.from(got[0].data.subarray(r * t, r * t + t));
      row.forEach((v, j) => (j > i ? expect(v).toBe(0) : expect(v).toBeGreaterThan(0)));
      expect(row.reduce((a, b) => a + b)).toBeCloseTo(1, 5);
    }
  });

  it.each([
    [3, 7],
    [5, 3],
    [1, 1],
    [1, 6],
  ])("the causal offset Tk − Tq, with a key mask (Tq %i, Tk %i)", async (t, s) => {
    const text = `graph @t(%x: f32[T,S], %m: f32[S]) -> (f32[T,S]) {
  %p = scale_softmax(%x, %m) {scale=0.7, causal=true} : f32[T,S]
  return %p
}`;
    const m = nd(
      [s],
      Array.from({ length: s }, (_, j) => (j === 1 ? 1 : 0)),
    );
    const { got } = await check(text, { x: randn([t, s], t * 10 + s, 5), m });
    // Query i sees keys j ≤ i + (Tk − Tq); a row that sees none (Tk < Tq) is zeros.
    for (let i = 0; i < t; i++)
      for (let j = 0; j < s; j++)
        if (j > i + (s - t) || j === 1) expect(got[0].data[i * s + j]).toBe(0);
  });

  it("the −∞ sentinel of an unfused causal_mask or masked_fill hides: fully hidden rows give zeros", async () => {
    // Tq > Tk: the first rows see no key at all.
    const text = `graph @t(%x: f32[T,S], %m: i32[T,S]) -> (f32[T,S], f32[T,S]) {
  %c = causal_mask(%x) : f32[T,S]
  %p = softmax(%c) {axis=1} : f32[T,S]
  %f = masked_fill(%x, %m) {value=-inf} : f32[T,S]
  %q = softmax(%f) {axis=1} : f32[T,S]
  return %p, %q
}`;
    const [t, k] = [5, 3];
    const m = nd(
      [t, k],
      Array.from({ length: t * k }, (_, n) => (Math.floor(n / k) === 1 ? 1 : n % 2)),
    );
    const { got } = await check(text, {
      x: randn([t, k], 3, 2),
      m: ndarray([t, k], Int32Array.from(m.data)),
    });
    expect(Array.from(got[0].data.subarray(0, 2 * k))).toEqual(Array(2 * k).fill(0));
    expect(Array.from(got[1].data.subarray(k, 2 * k))).toEqual([0, 0, 0]);
  });
});
