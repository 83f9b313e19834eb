/** The map and gather families' WGSL kernels (expr, copy, masked_fill, causal_mask, range,
 *  sinusoidal, concat, gather) on the test device against the Program interpreter: odd sizes
 *  (never a multiple of the workgroup size), T = 1, several workgroups, strided and transposed
 *  views, broadcasting, i32 masks, symbolic range starts (a bound dim, and P in KV-cache steps),
 *  buffers split into chunks by a tiny binding size, dispatches folded into two dimensions by a
 *  tiny workgroup count per dimension, out-of-range gather ids (zeros), and the sinusoidal's
 *  accuracy against float64 at large positions.
 *
 *  Where the interpreter writes −∞ (causal_mask, masked_fill with value −∞) the WGSL kernels
 *  write the finite sentinel NEG_BIG: `expectClose` requires ≤ −3e38 there. */
import { assert, describe, expect, it } from "vitest";
import { NEG_BIG } from "../../../../compiler/codegen/wgsl/kernel.ts";
import { sinusoidalTurns } from "../../../../compiler/codegen/wgsl/kernels-map.ts";
import {
  WEBGPU_DEFAULTS,
  withLimits,
  type Limits,
} from "../../../../compiler/codegen/wgsl/limits.ts";
import type { WgslProgram } from "../../../../compiler/codegen/wgsl/program.ts";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../../compiler/ir/parse.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import { evalSym } from "../../../../compiler/lower/sym.ts";
import { testGpu } from "../../../helpers/gpu.ts";
import { nd, randn as randn64, type Arrays } from "../../util.ts";
import { wgslPair, type WgslPair } from "./harness.ts";

const gpu = await testGpu();

const f32 = (a: NDArray): NDArray => ndarray(a.shape, Float32Array.from(a.data));
const randn = (shape: number[], seed: number, scale = 1) => f32(randn64(shape, seed, scale));

/** Same shape; where `want` is −∞, `got` is the sentinel (≤ −3e38); elsewhere
 *  |got − want| / max(1, |want|) ≤ tol. */
function expectClose(got: NDArray, want: NDArray, tol: number, what: string): void {
  expect(got.shape, what).toEqual(want.shape);
  for (let i = 0; i < want.data.length; i++) {
    const [g, w] = [got.data[i], want.data[i]];
    if (w === -Infinity) {
      if (!(g <= -3e38)) assert.fail(`${what}[${i}]: ${g} where the reference has -inf`);
      continue;
    }
    expect(Number.isFinite(w), `${what}[${i}] reference`).toBe(true);
    const d = Math.abs(g - w) / Math.max(1, Math.abs(w));
    if (!(d <= tol)) assert.fail(`${what}[${i}]: got ${g}, want ${w} (error ${d} > ${tol})`);
  }
}

interface Options {
  readonly tol?: number;
  readonly maxDims?: ReadonlyMap<string, number>;
  readonly limits?: Limits;
}

const T8 = new Map([
  ["T", 8],
  ["S", 8],
]);

async function pairOf(text: string, params: Arrays = {}, o: Options = {}): Promise<WgslPair> {
  const p = await wgslPair(gpu!, parseGraph(text), (n) => params[n], {
    maxDims: o.maxDims ?? T8,
    limits: o.limits,
  });
  expect(p.model.messages).toEqual([]);
  return p;
}

/** Runs a forward on both and compares every output; returns the WGSL outputs. */
async function check(
  p: WgslPair,
  inputs: Arrays,
  o: Options = {},
  how: "run" | "step" = "run",
): Promise<NDArray[]> {
  const { got, want } = await p[how](new Map(Object.entries(inputs)));
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expectClose(g, want[i], o.tol ?? 1e-6, `output ${i}`));
  return got;
}

async function checkGraph(
  text: string,
  inputs: Arrays,
  params: Arrays = {},
  o: Options = {},
): Promise<NDArray[]> {
  return check(await pairOf(text, params, o), inputs, o);
}

const kinds = (text: string) => lower(parseGraph(text)).kernels.map((k) => k.body.kind);

/** Workgroups a kernel dispatches at these dims. */
function groupsAt(w: WgslProgram, name: RegExp, dims: Record<string, number>): number {
  const k = w.kernels.find((x) => name.test(x.name));
  if (!k) throw new Error(`no kernel ${String(name)}`);
  return Math.ceil(evalSym(k.workgroups.count, new Map(Object.entries(dims))) / k.workgroups.per);
}

const MAP = `graph @t(%x: f32[T,5], %y: f32[5], %s: f32[], %k: i32[T,1]) -> (f32[T,5], f32[T,5]) {
  %m = map(%x, %y, %s) {expr="gelu(add(mul($0, $1), tanh($2)))"} : f32[T,5]
  %f = masked_fill(%m, %y) {value=-7} : f32[T,5]
  %g = masked_fill(%x, %k) {value=-inf} : f32[T,5]
  return %f, %g
}`;

const mapInputs = (t: number) => ({
  x: randn([t, 5], t),
  y: nd([5], [0, 1, 0, 2, 0]),
  s: nd([], [0.3]),
  k: nd(
    [t, 1],
    Array.from({ length: t }, (_, i) => i % 2),
  ),
});

/** Every map body but expr and masked_fill, on strided views (the TypeScript backend's test). */
const VIEWS = `graph @t(%x: f32[3,T,7]) -> (f32[3,T,7], f32[T,6], f32[T,21], f32[3,T,9], f32[7,T,3]) {
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

const GATHER = `graph @t(%ids: i32[T,2]) -> (f32[T,2,3,2]) {
  %w = param() {name="w"} : f32[7,2,3]
  %t = transpose(%w) {perm=[0,2,1]} : f32[7,3,2]
  %g = gather(%t, %ids) : f32[T,2,3,2]
  return %g
}`;

const gatherIds = (t: number) =>
  nd(
    [t, 2],
    Array.from({ length: 2 * t }, (_, i) => (i * 5) % 7),
  );

describe.skipIf(!gpu)("wgsl map family", () => {
  it.each([1, 3, 37])("expr and masked_fill broadcast; i32 masks; −∞ fills (T = %i)", async (t) => {
    expect(kinds(MAP)).toEqual(["expr", "masked_fill", "masked_fill"]);
    const [, g] = await checkGraph(
      MAP,
      mapInputs(t),
      {},
      { tol: 1e-5, maxDims: new Map([["T", 40]]) },
    );
    // Rows with k = 1 are the sentinel, exactly.
    for (let i = 0; i < t; i++)
      for (let c = 0; c < 5; c++)
        if (i % 2) expect(g.data[i * 5 + c]).toBe(Math.fround(Number(NEG_BIG)));
  });

  it.each([1, 5, 37])(
    "causal mask, range, sinusoidal, concat, a reshape copy and a transposed copy (T = %i)",
    async (t) => {
      expect(new Set(kinds(VIEWS))).toEqual(
        new Set(["causal_mask", "range", "sinusoidal", "copy", "concat"]),
      );
      const p = await pairOf(VIEWS, {}, { maxDims: new Map([["T", 40]]) });
      const [c] = await check(p, { x: randn([3, t, 7], t) });
      // The mask's sentinel where key j > query i (Tq = T, Tk = 7).
      for (let h = 0; h < 3; h++)
        for (let i = 0; i < t; i++)
          for (let j = 0; j < 7; j++)
            if (j > i + 7 - t) expect(c.data[(h * t + i) * 7 + j]).toBeLessThanOrEqual(-3e38);
            else expect(c.data[(h * t + i) * 7 + j]).not.toBeLessThanOrEqual(-3e38);
      if (t === 37) expect(groupsAt(p.wgsl, /causal_mask/, { T: t })).toBe(4);
    },
  );

  it.each([
    [1, 4],
    [3, 3],
    [5, 2],
  ])("causal mask with Tq = %i, Tk = %i (offset Tk − Tq, rows fully masked)", async (t, s) => {
    const text = `graph @t(%x: f32[2,T,S]) -> (f32[2,T,S]) {
  %c = causal_mask(%x) : f32[2,T,S]
  return %c
}`;
    const [c] = await checkGraph(text, { x: randn([2, t, s], 10 + t) });
    const masked = Array.from(c.data).filter((v) => v <= -3e38).length;
    let want = 0;
    for (let i = 0; i < t; i++) for (let j = 0; j < s; j++) if (j > i + s - t) want++;
    expect(masked).toBe(2 * want);
  });

  it("concat of three parts: a transposed view, an input, a slice, along a symbolic axis", async () => {
    const text = `graph @t(%x: f32[5,T], %y: f32[S,5]) -> (f32[T+S+2,5], f32[5,3,T]) {
  %a = transpose(%x) {perm=[1,0]} : f32[T,5]
  %b = slice(%y) {axis=0, start=0, size=2} : f32[2,5]
  %c = concat(%a, %y, %b) {axis=0} : f32[T+S+2,5]
  %r = reshape(%x) {shape=[5,1,T]} : f32[5,1,T]
  %d = concat(%r, %r, %r) {axis=1} : f32[5,3,T]
  return %c, %d
}`;
    expect(kinds(text)).toEqual(["concat", "concat"]);
    for (const [t, s] of [
      [1, 3],
      [4, 7],
    ])
      await checkGraph(text, { x: randn([5, t], t), y: randn([s, 5], s) });
  });

  it("range from a symbolic start; sinusoidal of positions from it", async () => {
    const text = `graph @t(%x: f32[S,2], %z: f32[T]) -> (i32[T], f32[T,8]) {
  %r = range() {start=S, size=T} : i32[T]
  %p = sinusoidal(%r) {dim=8} : f32[T,8]
  return %r, %p
}`;
    const p = await pairOf(text);
    for (const [t, s] of [
      [1, 8],
      [5, 3],
    ]) {
      const [r] = await check(p, { x: randn([s, 2], 1), z: randn([t], 2) }, { tol: 1e-6 });
      expect(Array.from(r.data)).toEqual(Array.from({ length: t }, (_, i) => s + i));
    }
  });

  it("KV-cache steps: a range over T starts at P (positions, a position table gather)", async () => {
    const text = `graph @t(%x: f32[T,4]) -> (f32[T,4], f32[T,6], i32[T]) {
  dim T <= 12 "the position table"
  %w = param() {name="wpe"} : f32[12,4]
  %r = range() {start=0, size=T} : i32[T]
  %e = gather(%w, %r) : f32[T,4]
  %y = add(%e, %x) : f32[T,4]
  %p = sinusoidal(%r) {dim=6} : f32[T,6]
  return %y, %p, %r
}`;
    const p = await pairOf(text, { wpe: randn([12, 4], 3) });
    expect(p.program.kvCache.enabled).toBe(true);
    await check(p, { x: randn([3, 4], 1) }, { tol: 1e-6 });
    const [, , r1] = await check(p, { x: randn([2, 4], 2) }, { tol: 1e-6 }, "step");
    expect(Array.from(r1.data)).toEqual([3, 4]);
    const [, , r2] = await check(p, { x: randn([1, 4], 3) }, { tol: 1e-6 }, "step");
    expect(Array.from(r2.data)).toEqual([5]);
  });
  it("KV-cache steps with nothing cached and T unbounded: P bounds nothing, steps run", async () => {
    const text = `graph @t(%x: f32[T,4]) -> (f32[T,6], i32[T]) {
  %r = range() {start=0, size=T} : i32[T]
  %p = sinusoidal(%r) {dim=6} : f32[T,6]
  return %p, %r
}`;
    const p = await pairOf(text);
    expect(p.program.kvCache).toMatchObject({ enabled: true, entries: [], capacity: undefined });
    await check(p, { x: randn([2, 4], 1) });
    for (const [t, at] of [
      [3, 2],
      [8, 5],
      [8, 13],
    ]) {
      const [, r] = await check(p, { x: randn([t, 4], t) }, {}, "step");
      expect(r.data[0]).toBe(at);
    }
  });
});

describe.skipIf(!gpu)("wgsl gather", () => {
  it.each([1, 3, 50])("rows of a strided table by ids of rank 2 (T = %i), exactly", async (t) => {
    expect(kinds(GATHER)).toEqual(["gather"]);
    await checkGraph(
      GATHER,
      { ids: gatherIds(t) },
      { w: randn([7, 2, 3], 4) },
      {
        tol: 0,
        maxDims: new Map([["T", 64]]),
      },
    );
  });

  it("a table of rank 1 and an i32 table", async () => {
    const text = `graph @t(%ids: i32[T], %k: i32[5]) -> (f32[T], i32[T]) {
  %w = param() {name="w"} : f32[9]
  %a = gather(%w, %ids) : f32[T]
  %b = gather(%k, %ids) : i32[T]
  return %a, %b
}`;
    const [, b] = await checkGraph(
      text,
      { ids: nd([3], [4, 0, 2]), k: nd([5], [10, 11, 12, 13, 14]) },
      { w: randn([9], 5) },
      { tol: 0 },
    );
    expect(Array.from(b.data)).toEqual([14, 10, 12]);
  });

  it("an id outside the table (negative or ≥ V) gives a row of zeros, no other row changes", async () => {
    const p = await pairOf(GATHER, { w: randn([7, 2, 3], 4) });
    const ids = [3, -1, 7, 2, 2147483647, -2147483648];
    const [o] = await p.session.run([{ shape: [3, 2], data: ids }]);
    const w = randn([7, 2, 3], 4);
    ids.forEach((id, n) => {
      const row = Array.from(o.data.subarray(n * 6, n * 6 + 6));
      if (id < 0 || id >= 7) expect(row, `id ${id}`).toEqual([0, 0, 0, 0, 0, 0]);
      // table row id, transposed: out[c, r] = w[id, r, c]
      else
        expect(row).toEqual(
          [0, 1, 2].flatMap((c) => [0, 1].map((r) => w.data[id * 6 + r * 3 + c])),
        );
    });
  });
});

describe.skipIf(!gpu)("wgsl map and gather under tiny limits", () => {
  /** 256-byte bindings: 64 elements per chunk. */
  const tiny = withLimits(WEBGPU_DEFAULTS, { maxStorageBufferBindingSize: 256 });

  it("a map and a gather over chunked buffers (chunk edges inside rows)", async () => {
    const text = `graph @t(%x: f32[T,20], %y: f32[20], %ids: i32[T]) -> (f32[T,20], f32[T,20]) {
  %w = param() {name="w"} : f32[7,20]
  %m = map(%x, %y) {expr="add(mul($0, $1), $0)"} : f32[T,20]
  %g = gather(%w, %ids) : f32[T,20]
  return %m, %g
}`;
    const w = randn([7, 20], 9);
    const p = await pairOf(text, { w }, { limits: tiny });
    const chunks = (node: string) => p.wgsl.buffers.find((b) => b.node === node)!.chunks;
    expect([chunks("x"), chunks("w"), chunks("m"), chunks("g")]).toEqual([3, 3, 3, 3]);
    for (const t of [1, 7])
      await check(p, {
        x: randn([t, 20], t),
        y: randn([20], 2),
        ids: nd(
          [t],
          Array.from({ length: t }, (_, i) => (i * 4 + 6) % 7),
        ),
      });
  });

  it("copy, concat, causal mask, sinusoidal and masked fill over chunked buffers", async () => {
    const text = `graph @t(%x: f32[3,T,9], %k: i32[T,9]) -> (f32[T,27], f32[3,T,11], f32[3,T,9], f32[T,40], f32[3,T,9]) {
  %t = transpose(%x) {perm=[1,0,2]} : f32[T,3,9]
  %m = reshape(%t) {shape=[T,27]} : f32[T,27]
  %s = slice(%x) {axis=2, start=3, size=2} : f32[3,T,2]
  %j = concat(%x, %s) {axis=2} : f32[3,T,11]
  %c = causal_mask(%x) : f32[3,T,9]
  %r = range() {start=100, size=T} : i32[T]
  %p = sinusoidal(%r) {dim=40} : f32[T,40]
  %f = masked_fill(%x, %k) {value=2.5} : f32[3,T,9]
  return %m, %j, %c, %p, %f
}`;
    const p = await pairOf(text, {}, { limits: tiny, maxDims: new Map([["T", 6]]) });
    expect(p.wgsl.buffers.filter((b) => b.chunks > 1).length).toBeGreaterThanOrEqual(5);
    for (const t of [1, 6])
      await check(
        p,
        {
          x: randn([3, t, 9], t),
          k: nd(
            [t, 9],
            Array.from({ length: 9 * t }, (_, i) => (i % 4 === 1 ? 1 : 0)),
          ),
        },
        { tol: 2e-6 },
      );
  });

  it("dispatches past a tiny per-dimension workgroup limit fold into two dimensions", async () => {
    const folded = withLimits(WEBGPU_DEFAULTS, {
      maxComputeWorkgroupsPerDimension: 5,
      maxComputeInvocationsPerWorkgroup: 4,
      maxComputeWorkgroupSizeX: 4,
    });
    const maxDims = new Map([["T", 3]]);
    const p = await pairOf(VIEWS, {}, { limits: folded, maxDims });
    for (const k of p.wgsl.kernels) expect(k.workgroupSize).toBe(4);
    // 3·3·7 = 63 elements: 16 workgroups, dispatched as 5 × 4.
    expect(groupsAt(p.wgsl, /causal_mask/, { T: 3 })).toBe(16);
    for (const t of [1, 2, 3]) await check(p, { x: randn([3, t, 7], t) });
    const g = await pairOf(GATHER, { w: randn([7, 2, 3], 4) }, { limits: folded, maxDims });
    expect(groupsAt(g.wgsl, /gather/, { T: 3 })).toBe(9);
    await check(g, { ids: gatherIds(3) }, { tol: 0 });
  });
});

describe.skipIf(!gpu)("wgsl sinusoidal accuracy", () => {
  const dim = 64;
  const reference = (p: number, c: number) => {
    const angle = p * Math.exp((-(c - (c % 2)) * Math.log(10000)) / dim);
    return c % 2 ? Math.cos(angle) : Math.sin(angle);
  };
  const text = `graph @t(%pos: i32[T]) -> (f32[T,${dim}]) {
  %p = sinusoidal(%pos) {dim=${dim}} : f32[T,${dim}]
  return %p
}`;

  /** max |got − float64 reference| over the positions. */
  async function worst(positions: number[]): Promise<number> {
    const p = await pairOf(text, {}, { maxDims: new Map([["T", 1100]]) });
    const [o] = await p.session.run([{ shape: [positions.length], data: positions }]);
    let e = 0;
    positions.forEach((pos, t) => {
      for (let c = 0; c < dim; c++)
        e = Math.max(e, Math.abs(o.data[t * dim + c] - reference(pos, c)));
    });
    return e;
  }

  it("the fixed-point turns are freq / 2π to 2^-64", () => {
    sinusoidalTurns(dim).forEach(([hi, lo], k) => {
      expect(Number.isInteger(hi) && hi >= 0 && hi < 2 ** 32).toBe(true);
      expect(Number.isInteger(lo) && lo >= 0 && lo < 2 ** 32).toBe(true);
      const r = Math.exp((-(2 * k) * Math.log(10000)) / dim) / (2 * Math.PI);
      expect(Math.abs(hi / 2 ** 32 + lo / 2 ** 64 - r)).toBeLessThan(2 ** -52);
    });
  });

  it("positions 0…1099: within 2e-6 of float64 (and the interpreter within 1e-5)", async () => {
    const positions = Array.from({ length: 1100 }, (_, i) => i);
    expect(await worst(positions)).toBeLessThan(2e-6);
    const p = await pairOf(text, {}, { maxDims: new Map([["T", 1100]]) });
    await check(p, { pos: nd([1100], positions) }, { tol: 1e-5 });
  });

  it("large and negative positions keep that accuracy (the angle is reduced exactly)", async () => {
    const positions = [
      -1,
      -1023,
      -65537,
      4095,
      65536,
      1e5 + 7,
      1234567,
      16777217,
      2 ** 30 + 3,
      2147483647,
      -2147483648,
    ];
    expect(await worst(positions)).toBeLessThan(2e-6);
  });
});
