/** The WGSL matmul kernel against the Program interpreter on the test device: odd sizes that are
 *  not multiples of any tile (1×7×5, 3×17×33, 70×65×129, as M×K×N), static M (one path) and
 *  M = T at run time on both sides of the GEMV threshold (T = 1…5, 70: the kernel's GEMV and
 *  tiled paths), batch axes broadcast with stride 0 on either operand, transposeB (weights and
 *  q·kᵀ with N = T), a transposed and a sliced a, a sliced and a transposed b, a fused epilogue
 *  (bias, gelu, residual), a chunked b (and output) under a tiny binding size, smaller tiles under tiny
 *  workgroup-storage and invocation limits, and the "limit" error when no tile fits (this one
 *  needs no device). Outputs must match to 1e-4 relative (f32 accumulation), and Dawn must
 *  compile every shader without a message. */
import { describe, expect, it } from "vitest";
import { emitWgsl } from "../../../../compiler/codegen/wgsl/program.ts";
import {
  TILES,
  gemvShape,
  invocations,
  tileBytes,
} from "../../../../compiler/codegen/wgsl/kernels-matmul.ts";
import {
  WEBGPU_DEFAULTS,
  withLimits,
  type Limits,
} from "../../../../compiler/codegen/wgsl/limits.ts";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../../compiler/ir/parse.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import { testGpu } from "../../../helpers/gpu.ts";
import { kilnError, randn as randn64, type Arrays } from "../../util.ts";
import { relError, wgslPair, type WgslPair } from "./harness.ts";

const gpu = await testGpu();

const f32 = (a: NDArray): NDArray => ndarray(a.shape, Float32Array.from(a.data));
const randn = (shape: number[], seed: number) => f32(randn64(shape, seed));
const TOL = 1e-4;

interface Check {
  readonly params?: Arrays;
  readonly limits?: Limits;
  readonly maxT?: number;
}

/** The graph on the device and in the interpreter; every output within TOL. Returns the pair. */
async function check(text: string, inputs: Arrays, o: Check = {}): Promise<WgslPair> {
  const p = await wgslPair(gpu!, parseGraph(text), (n) => o.params?.[n], {
    maxDims: new Map([["T", o.maxT ?? 80]]),
    ...(o.limits ? { limits: o.limits } : {}),
  });
  expect(p.model.messages).toEqual([]);
  expect(p.program.kernels.map((k) => k.body.kind)).toContain("matmul");
  const { got, want } = await p.run(new Map(Object.entries(inputs)));
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(relError(g, want[i]), `output ${i}`).toBeLessThanOrEqual(TOL));
  return p;
}

/** The matmul kernel's source (the program's only or first matmul). */
function matmulKernel(p: WgslPair) {
  const i = p.program.kernels.findIndex((k) => k.body.kind === "matmul");
  return p.wgsl.kernels[i];
}

const plain = (M: number | string, K: number, N: number) =>
  `graph @t(%x: f32[${M},${K}]) -> (f32[${M},${N}]) {
  %w = param() {name="w"} : f32[${K},${N}]
  %y = matmul(%x, %w) {transposeB=false} : f32[${M},${N}]
  return %y
}`;

describe("tiles", () => {
  it("every tile's blocks divide it, its invocations fit the default size, its GEMV fits it", () => {
    for (const t of TILES) {
      expect(t.rows % t.regRows).toBe(0);
      expect(t.cols % t.regCols).toBe(0);
      expect(invocations(t)).toBeLessThanOrEqual(WEBGPU_DEFAULTS.maxComputeInvocationsPerWorkgroup);
      expect(tileBytes(t)).toBeLessThanOrEqual(WEBGPU_DEFAULTS.maxComputeWorkgroupStorageSize);
      const g = gemvShape(t);
      expect(g.cols * g.slices).toBe(invocations(t));
      expect(t.cols % g.cols).toBe(0);
      expect(g.rows * invocations(t) * 4).toBeLessThanOrEqual(tileBytes(t));
    }
    expect(TILES[0]).toEqual({ rows: 64, cols: 64, depth: 16, regRows: 4, regCols: 4 });
    // The last tile is the least in both limits, so when it does not fit, none does.
    const last = TILES[TILES.length - 1];
    for (const t of TILES) {
      expect(invocations(last)).toBeLessThanOrEqual(invocations(t));
      expect(tileBytes(last)).toBeLessThanOrEqual(tileBytes(t));
    }
  });

  it("no tile fits a tiny workgroup storage: a limit error naming the kernel and the limit", () => {
    const p = lower(parseGraph(plain("T", 5, 7)));
    const limits = withLimits(WEBGPU_DEFAULTS, { maxComputeWorkgroupStorageSize: 64 });
    const e = kilnError(() => emitWgsl(p, { limits, maxDims: new Map([["T", 8]]) }), "limit");
    expect(e.where).toBe(p.kernels[0].name);
    expect(e.where).toMatch(/matmul/);
    expect(e.detail).toMatch(/^maxComputeWorkgroupStorageSize: .* 160, the profile allows 64$/);
  });

  it("no tile fits 8 invocations: a limit error naming maxComputeInvocationsPerWorkgroup", () => {
    const p = lower(parseGraph(plain("T", 5, 7)));
    const limits = withLimits(WEBGPU_DEFAULTS, { maxComputeInvocationsPerWorkgroup: 8 });
    const e = kilnError(() => emitWgsl(p, { limits, maxDims: new Map([["T", 8]]) }), "limit");
    expect(e.where).toBe(p.kernels[0].name);
    expect(e.detail).toMatch(/^maxComputeInvocationsPerWorkgroup: .* 16, the profile allows 8$/);
  });

  it("picks smaller tiles when the profile demands it", () => {
    const p = lower(parseGraph(plain("T", 5, 7)));
    const at = (l: Partial<Limits>) =>
      emitWgsl(p, { limits: withLimits(WEBGPU_DEFAULTS, l), maxDims: new Map([["T", 8]]) })
        .kernels[0];
    const big = at({});
    expect([big.workgroupSize, big.workgroupBytes]).toEqual([256, 8320]);
    expect(big.source).toMatch(/tiled: 64×64 outputs/);
    const small = at({ maxComputeWorkgroupStorageSize: 2560 });
    expect([small.workgroupSize, small.workgroupBytes]).toEqual([256, 2112]);
    expect(small.source).toMatch(/tiled: 32×32 outputs per workgroup, K step 8/);
    const few = at({ maxComputeInvocationsPerWorkgroup: 32 });
    expect(few.workgroupSize).toBe(16);
    expect(few.source).toMatch(/tiled: 16×16 outputs/);
  });

  it("M as a number keeps one path; M = T keeps both, chosen by M at run time", () => {
    const src = (M: number | string) =>
      emitWgsl(lower(parseGraph(plain(M, 5, 7))), { maxDims: new Map([["T", 8]]) }).kernels[0]
        .source;
    expect(src(1)).toMatch(/GEMV/);
    expect(src(1)).not.toMatch(/Tiled/);
    expect(src(70)).toMatch(/Tiled/);
    expect(src(70)).not.toMatch(/GEMV/);
    expect(src("T")).toMatch(/if \(dims\.d0 <= 4u\) \{[\s\S]*GEMV[\s\S]*Tiled/);
  });
});

describe.skipIf(!gpu)("wgsl matmul", () => {
  it.each([
    [1, 7, 5],
    [3, 17, 33],
    [70, 65, 129],
    [4, 1, 1],
  ])("static M×K×N = %i×%i×%i", async (M, K, N) => {
    await check(
      plain(M, K, N),
      { x: randn([M, K], M + K) },
      {
        params: { w: randn([K, N], N) },
      },
    );
  });

  it.each([1, 2, 3, 4, 5, 70])("M = T = %i on either path, K and N off the tile", async (t) => {
    const p = await check(
      plain("T", 65, 129),
      { x: randn([t, 65], t) },
      {
        params: { w: randn([65, 129], 2) },
      },
    );
    const k = matmulKernel(p);
    expect(k.source).toMatch(/GEMV[\s\S]*Tiled/);
  });

  it.each([1, 3, 70])(
    "transposeB weight [N,K] (the tied lm-head layout), with bias + gelu + residual (T = %i)",
    async (t) => {
      const text = `graph @t(%x: f32[T,33], %r: f32[T,67]) -> (f32[T,67]) {
  %w = param() {name="w"} : f32[67,33]
  %c = param() {name="c"} : f32[67]
  %y = matmul_epilogue(%x, %w, %c, %r) {transposeB=true, expr="add(gelu(add(acc, $0)), $1)"} : f32[T,67]
  return %y
}`;
      await check(
        text,
        { x: randn([t, 33], t), r: randn([t, 67], 9) },
        { params: { w: randn([67, 33], 3), c: randn([67], 4) } },
      );
    },
  );

  it.each([1, 5])("batch axes broadcast with stride 0 on b, then on a (T = %i)", async (t) => {
    const text = `graph @t(%a: f32[2,3,T,5], %x: f32[T,5]) -> (f32[2,3,T,7], f32[4,T,7]) {
  %w = param() {name="w"} : f32[3,5,7]
  %v = param() {name="v"} : f32[4,5,7]
  %y = matmul(%a, %w) {transposeB=false} : f32[2,3,T,7]
  %z = matmul(%x, %v) {transposeB=false} : f32[4,T,7]
  return %y, %z
}`;
    await check(
      text,
      { a: randn([2, 3, t, 5], t), x: randn([t, 5], 11) },
      { params: { w: randn([3, 5, 7], 5), v: randn([4, 5, 7], 6) } },
    );
  });

  it.each([1, 4, 9, 70])("q·kᵀ per head: both operands at run time, N = T (T = %i)", async (t) => {
    const text = `graph @t(%q: f32[3,T,6], %k: f32[3,T,6], %m: f32[T,T]) -> (f32[3,T,T]) {
  %s = matmul_epilogue(%q, %k, %m) {transposeB=true, expr="add(mul(acc, 0.4), $0)"} : f32[3,T,T]
  return %s
}`;
    await check(text, { q: randn([3, t, 6], t), k: randn([3, t, 6], 12), m: randn([t, t], 13) });
  });

  it.each([1, 3, 70])("a transposed or sliced, b sliced or transposed (T = %i)", async (t) => {
    const text = `graph @t(%xt: f32[9,T], %xw: f32[T,20]) -> (f32[T,7], f32[T,6]) {
  %wide = param() {name="wide"} : f32[9,20]
  %u = param() {name="u"} : f32[6,9]
  %a = transpose(%xt) {perm=[1,0]} : f32[T,9]
  %b = slice(%wide) {axis=1, start=3, size=7} : f32[9,7]
  %y = matmul(%a, %b) {transposeB=false} : f32[T,7]
  %s = slice(%xw) {axis=1, start=2, size=9} : f32[T,9]
  %ut = transpose(%u) {perm=[1,0]} : f32[9,6]
  %z = matmul(%s, %ut) {transposeB=false} : f32[T,6]
  return %y, %z
}`;
    const p = await check(
      text,
      { xt: randn([9, t], t), xw: randn([t, 20], 14) },
      { params: { wide: randn([9, 20], 15), u: randn([6, 9], 16) } },
    );
    // No copies: the views are read in place.
    expect(p.program.kernels.map((k) => k.body.kind)).toEqual(["matmul", "matmul"]);
  });

  it.each([1, 3, 12])("a chunked b (and output) under a 1 KiB binding size (T = %i)", async (t) => {
    const text = `graph @t(%x: f32[T,17]) -> (f32[T,33]) {
  %w = param() {name="w"} : f32[33,17]
  %y = matmul(%x, %w) {transposeB=true} : f32[T,33]
  return %y
}`;
    const limits = withLimits(WEBGPU_DEFAULTS, { maxStorageBufferBindingSize: 1024 });
    const p = await check(
      text,
      { x: randn([t, 17], t) },
      { params: { w: randn([33, 17], 17) }, limits, maxT: 12 },
    );
    const w = p.wgsl.buffers.find((b) => b.name === "w")!;
    expect(w.chunks).toBe(3);
    const k = matmulKernel(p);
    expect(k.bindings.filter((b) => b.buffer === w.id).length).toBe(3);
    const bound = new RegExp(`> (buf\\d+)_0: array<f32>; // b${w.id}: `).exec(k.source);
    expect(bound).not.toBeNull();
    expect(k.source).toContain(`ld_${bound![1]}(`);
    const y = p.wgsl.buffers.find((b) => b.role === "output")!;
    expect(y.chunks).toBe(2); // 12·33 elements at capacity, 256 per chunk
    expect(k.source).toMatch(/st_buf0\(/); // the output is the kernel's first buffer
  });

  it.each([1, 70])("smaller tiles under a 1.5 KiB workgroup storage (T = %i)", async (t) => {
    const limits = withLimits(WEBGPU_DEFAULTS, { maxComputeWorkgroupStorageSize: 1536 });
    const p = await check(
      plain("T", 65, 129),
      { x: randn([t, 65], t) },
      { params: { w: randn([65, 129], 2) }, limits },
    );
    const k = matmulKernel(p);
    expect([k.workgroupSize, k.workgroupBytes]).toEqual([64, 1088]);
    expect(k.source).toMatch(/tiled: 16×16 outputs/);
  });

  it.each([1, 70])("the smallest tile under 16 invocations and 160 bytes (T = %i)", async (t) => {
    const limits = withLimits(WEBGPU_DEFAULTS, {
      maxComputeWorkgroupStorageSize: 160,
      maxComputeInvocationsPerWorkgroup: 16,
    });
    const p = await check(
      plain("T", 65, 129),
      { x: randn([t, 65], t) },
      { params: { w: randn([65, 129], 2) }, limits },
    );
    const k = matmulKernel(p);
    expect([k.workgroupSize, k.workgroupBytes]).toEqual([16, 160]);
    expect(k.source).toMatch(/tiled: 4×4 outputs/);
  });

  it.each([1, 70])(
    "a dispatch folded into two dimensions (4 workgroups per dimension, T = %i)",
    async (t) => {
      const limits = withLimits(WEBGPU_DEFAULTS, { maxComputeWorkgroupsPerDimension: 4 });
      await check(
        plain("T", 65, 129),
        { x: randn([t, 65], t) },
        { params: { w: randn([65, 129], 2) }, limits },
      );
    },
  );
});
