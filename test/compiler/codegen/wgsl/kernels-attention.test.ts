/** The WGSL attention family (compiler/codegen/wgsl/kernels-attention.ts) on the test device
 *  against the Program interpreter, within 1e-4 (f32 against float64): odd sizes and T = 1,
 *  Tk = 1 and Tk < Tq under the causal rule, several query blocks and key tiles (and the tiny
 *  tiles a small limits profile forces), heads > 1 over strided q/k/v thirds of one merged
 *  buffer with D = 5, 64, 128, key-padding masks, huge scores that grow or shrink across tiles,
 *  a fully masked row (zeros), NaN and 1e10 in masked keys and values (nothing leaks); and the
 *  cached kernel: a prefill then decode steps equal one full forward's rows (the steps reading
 *  cache rows the kernel itself appended), up to a step that fills the cache, and the refusal of
 *  one more. Every compiled program must give no compilation messages.
 *
 *  A program is compiled once per (graph, bounds, profile) and run on many inputs: the software
 *  adapter compiles each pipeline on its first dispatch, which is slow. Generous timeouts for
 *  the same reason (they bound the run, they assert nothing). */
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { chooseTiles } from "../../../../compiler/codegen/wgsl/kernels-attention.ts";
import {
  WEBGPU_DEFAULTS,
  withLimits,
  type Limits,
} from "../../../../compiler/codegen/wgsl/limits.ts";
import { emitWgsl } from "../../../../compiler/codegen/wgsl/program.ts";
import { KilnError } from "../../../../compiler/errors.ts";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { parseGraph } from "../../../../compiler/ir/parse.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import { testGpu } from "../../../helpers/gpu.ts";
import { nd, randn as randn64, type Arrays } from "../../util.ts";
import { relError, wgslPair, type WgslPair } from "./harness.ts";

const gpu = await testGpu();

const f32 = (a: NDArray): NDArray => ndarray(a.shape, Float32Array.from(a.data));
const randn = (shape: number[], seed: number, scale = 1) => f32(randn64(shape, seed, scale));
const TOL = 1e-4;

/** A profile that forces tiny tiles for head dim d (2 query rows, 2 keys) and `wg` invocations
 *  (3: not a power of two, so an invocation has no row to score). */
const tiny = (base: Limits, d: number, wg = 4): Limits =>
  withLimits(base, {
    maxComputeWorkgroupStorageSize: 4 * (4 * (d | 1) + 16),
    maxComputeInvocationsPerWorkgroup: wg,
    maxComputeWorkgroupSizeX: wg,
  });

const kinds = (text: string) => lower(parseGraph(text)).kernels.map((k) => k.body.kind);
const SLOW = { timeout: 600_000 };

const pairs = new Map<string, Promise<WgslPair>>();
afterAll(async () => {
  for (const p of pairs.values()) {
    const x = await p.catch(() => undefined);
    x?.session.destroy();
    x?.model.destroy();
  }
});

/** The graph compiled for the device (once per text, bounds and profile). */
function pairOf(text: string, maxDims: Record<string, number>, limits?: Limits): Promise<WgslPair> {
  const key = JSON.stringify([text, maxDims, limits ?? gpu!.limits]);
  let p = pairs.get(key);
  if (!p) {
    p = wgslPair(gpu!, parseGraph(text), () => undefined, {
      maxDims: new Map(Object.entries(maxDims)),
      limits: limits ?? gpu!.limits,
    });
    pairs.set(key, p);
  }
  return p.then((x) => {
    expect(x.model.messages).toEqual([]);
    return x;
  });
}

/** Runs the graph on the device and in the interpreter; returns the device's outputs. */
async function check(
  text: string,
  inputs: Arrays,
  maxDims: Record<string, number>,
  limits?: Limits,
): Promise<NDArray[]> {
  const p = await pairOf(text, maxDims, limits);
  const { got, want } = await p.run(new Map(Object.entries(inputs)));
  expect(got.length).toBe(want.length);
  got.forEach((o, i) => expect(relError(o, want[i]), `output ${i}`).toBeLessThanOrEqual(TOL));
  return got;
}

describe("tile sizes", () => {
  it.each([1, 5, 64, 128, 256, 1000])(
    "D = %i fits the default profile's workgroup storage",
    (d) => {
      for (const masked of [false, true]) {
        const t = chooseTiles(WEBGPU_DEFAULTS, 256, d, 1024, masked);
        const words = (t.bq + t.bk) * t.dp + t.bq * t.bk + 2 * t.wg + t.bq + (masked ? t.bk : 0);
        expect(words * 4).toBeLessThanOrEqual(16384);
        expect(t.dp % 2).toBe(1);
        expect(t.bq * t.lanes).toBeLessThanOrEqual(t.wg);
        expect(t.lanes * t.perLane).toBeGreaterThanOrEqual(t.bk);
        expect(t.wg * t.perInvocation).toBeGreaterThanOrEqual(t.bq * t.d);
      }
    },
  );

  it("query blocks shrink to the bound on T; D = 64 keeps 16 × 32 tiles, D = 128 8 × 16", () => {
    expect(chooseTiles(WEBGPU_DEFAULTS, 256, 64, 1024, false)).toMatchObject({ bq: 16, bk: 32 });
    expect(chooseTiles(WEBGPU_DEFAULTS, 256, 128, 1024, false)).toMatchObject({ bq: 8, bk: 16 });
    expect(chooseTiles(WEBGPU_DEFAULTS, 256, 64, 3, false).bq).toBe(4);
    expect(chooseTiles(WEBGPU_DEFAULTS, 256, 64, 1, false).bq).toBe(1);
  });

  it("a head too wide for even 1×1 tiles is a limit error naming the kernel", () => {
    const c = 5000;
    const g =
      parseGraph(`graph @t(%q: f32[T,${c}], %k: f32[S,${c}], %v: f32[S,${c}]) -> (f32[T,${c}]) {
  %a = attention(%q, %k, %v) {heads=1, scale=1, causal=false} : f32[T,${c}]
  return %a
}`);
    let err: unknown;
    try {
      emitWgsl(lower(g), {
        maxDims: new Map([
          ["T", 4],
          ["S", 4],
        ]),
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KilnError);
    expect((err as KilnError).kind).toBe("limit");
    expect((err as KilnError).message).toMatch(/k0_attention: maxComputeWorkgroupStorageSize/);
  });
});

describe.skipIf(!gpu)("attention", SLOW, () => {
  const text = `graph @t(%q: f32[T,15], %k: f32[S,15], %v: f32[S,15], %m: f32[S]) -> (f32[T,15], f32[T,15], f32[T,15]) {
  %c = attention(%q, %k, %v) {heads=3, scale=0.4, causal=true} : f32[T,15]
  %x = attention(%q, %k, %v, %m) {heads=3, scale=0.4, causal=false} : f32[T,15]
  %y = attention(%q, %k, %v, %m) {heads=3, scale=0.4, causal=true} : f32[T,15]
  return %c, %x, %y
}`;
  const BOUNDS = { T: 70, S: 70 };
  const inputs = (t: number, s: number): Arrays => ({
    q: randn([t, 15], t, 2),
    k: randn([s, 15], s + 50, 2),
    v: randn([s, 15], s + 90),
    m: nd(
      [s],
      Array.from({ length: s }, (_, j) => (j % 3 === 1 ? 1 : 0)),
    ),
  });
  const sizes: [number, number][] = [
    [1, 7],
    [5, 7],
    [7, 7],
    [4, 1],
    [1, 1],
    [9, 3],
  ];

  it("per head, odd sizes, T = 1, Tk = 1, causal offset (Tk < Tq too)", async () => {
    expect(kinds(text)).toEqual(["attention", "attention", "attention"]);
    for (const [t, s] of sizes) await check(text, inputs(t, s), BOUNDS);
  });

  it("several query blocks and key tiles", async () => {
    for (const [t, s] of [
      [37, 70],
      [70, 37],
      [1, 70],
      [16, 32],
      [17, 33],
    ])
      await check(text, inputs(t, s), BOUNDS);
  });

  it("the tiny tiles of a small profile (blocks of 2 rows, tiles of 2 keys, 4 invocations)", async () => {
    expect(chooseTiles(tiny(gpu!.limits, 5), 4, 5, 9, true)).toMatchObject({
      bq: 2,
      bk: 2,
      lanes: 2,
      wg: 4,
    });
    for (const [t, s] of [...sizes, [8, 8] as [number, number]])
      await check(text, inputs(t, s), { T: 9, S: 9 }, tiny(gpu!.limits, 5));
  });

  it("causal with fewer keys than queries: the first rows see no key and give zeros", async () => {
    const [c] = await check(text, inputs(6, 2), BOUNDS);
    // Row i sees keys j <= i - 4: rows 0..3 none.
    expect(Array.from(c.data.subarray(0, 4 * 15))).toEqual(Array<number>(60).fill(0));
    expect(c.data.subarray(4 * 15).some((x) => x !== 0)).toBe(true);
  });

  /** q, k and v as strided thirds of one [T, 3C] buffer, with a key mask over T. */
  const merged = (heads: number, d: number, causal: boolean) => {
    const c = heads * d;
    return `graph @t(%x: f32[T,${3 * c}], %m: f32[T]) -> (f32[T,${c}]) {
  %q = slice(%x) {axis=1, start=0, size=${c}} : f32[T,${c}]
  %k = slice(%x) {axis=1, start=${c}, size=${c}} : f32[T,${c}]
  %v = slice(%x) {axis=1, start=${2 * c}, size=${c}} : f32[T,${c}]
  %a = attention(%q, %k, %v, %m) {heads=${heads}, scale=${1 / Math.sqrt(d)}, causal=${causal}} : f32[T,${c}]
  return %a
}`;
  };
  it.each([
    [3, 5, true],
    [2, 64, false],
    [2, 128, true],
  ])("heads %i of D = %i over one merged qkv buffer (causal %s)", async (heads, d, causal) => {
    const g = merged(heads, d, causal);
    const p = lower(parseGraph(g));
    expect(p.kernels.map((k) => k.body.kind)).toEqual(["attention"]);
    expect(new Set(p.kernels[0].inputs.slice(0, 3).map((v) => v.buffer)).size).toBe(1);
    for (const t of [1, 11, 33]) {
      const m = nd(
        [t],
        Array.from({ length: t }, (_, j) => (j % 4 === 2 ? 1 : 0)),
      );
      await check(g, { x: randn([t, 3 * heads * d], heads * d + t, 1.5), m }, { T: 40 });
    }
  });

  const one = `graph @t(%q: f32[T,1], %k: f32[S,1], %v: f32[S,1], %m: f32[S]) -> (f32[T,1]) {
  %x = attention(%q, %k, %v, %m) {heads=1, scale=1, causal=false} : f32[T,1]
  return %x
}`;
  const ONE = { T: 4, S: 100 };

  it("large scores: 10000…10003 rescale the accumulator without overflow", async () => {
    const [o] = await check(
      one,
      {
        q: nd([1, 1], [1]),
        k: nd([4, 1], [10000, 10001, 10002, 10003]),
        v: nd([4, 1], [1, 2, 3, 4]),
        m: nd([4], [0, 0, 0, 0]),
      },
      ONE,
    );
    const e = [0, 1, 2, 3].map((j) => Math.exp(j - 3));
    expect(o.data[0]).toBeCloseTo(
      e.reduce((a, w, j) => a + w * (j + 1), 0) / e.reduce((a, b) => a + b),
      5,
    );
  });

  it("huge scores that grow or shrink from tile to tile (the running max rescales)", async () => {
    const s = 100; // several 32-key tiles (and many 2-key ones in the tiny profile)
    for (const dir of [1, -1]) {
      const k = nd(
        [s, 1],
        Array.from({ length: s }, (_, j) => dir * (j * 50 + 1e4)),
      );
      const v = nd(
        [s, 1],
        Array.from({ length: s }, (_, j) => j + 1),
      );
      const q = nd([2, 1], [1, 0.02]);
      for (const limits of [gpu!.limits, tiny(gpu!.limits, 1)]) {
        const [o] = await check(
          one,
          { q, k, v, m: nd([s], Array<number>(s).fill(0)) },
          ONE,
          limits,
        );
        // Query 0: one key dominates (scores 50 apart). Query 1: scores 1 apart.
        expect(o.data[0]).toBeCloseTo(dir > 0 ? s : 1, 4);
        const w = Array.from({ length: s }, (_, j) => Math.exp(dir * j));
        const z = w.reduce((a, b) => a + b);
        expect(o.data[1]).toBeCloseTo(
          w.reduce((a, x, j) => a + (x / z) * (j + 1), 0),
          3,
        );
      }
    }
  });

  it("all keys masked gives zeros; NaN or 1e10 in masked keys and values does not leak", async () => {
    const q = nd([2, 1], [1, -1]);
    const hidden = { k: nd([3, 1], [NaN, 0.5, 1e10]), v: nd([3, 1], [NaN, 2, 1e10]) };
    for (const limits of [gpu!.limits, tiny(gpu!.limits, 1)]) {
      const [o] = await check(one, { q, ...hidden, m: nd([3], [1, 0, 1]) }, ONE, limits);
      expect(Array.from(o.data)).toEqual([2, 2]); // only key 1 is visible
      const [z] = await check(one, { q, ...hidden, m: nd([3], [1, 1, 1]) }, ONE, limits);
      expect(Array.from(z.data)).toEqual([0, 0]);
    }
  });

  it("an i32 key mask hides where it is not 0", async () => {
    const g = one.replace("%m: f32[S]", "%m: i32[S]");
    const q = nd([2, 1], [1, -1]);
    const hidden = { k: nd([3, 1], [NaN, 0.5, 1e10]), v: nd([3, 1], [NaN, 2, 1e10]) };
    const [o] = await check(g, { q, ...hidden, m: nd([3], [-1, 0, 7]) }, ONE);
    expect(Array.from(o.data)).toEqual([2, 2]);
  });

  it("hidden keys never leak, as a property (random sizes, masks, NaN/1e10)", async () => {
    const [heads, d] = [2, 3];
    const c = heads * d;
    const g = `graph @t(%q: f32[T,${c}], %k: f32[S,${c}], %v: f32[S,${c}], %m: f32[S]) -> (f32[T,${c}], f32[T,${c}]) {
  %x = attention(%q, %k, %v, %m) {heads=${heads}, scale=0.7, causal=false} : f32[T,${c}]
  %y = attention(%q, %k, %v, %m) {heads=${heads}, scale=1.3, causal=true} : f32[T,${c}]
  return %x, %y
}`;
    const shapes = fc.record({
      tq: fc.integer({ min: 1, max: 9 }),
      tk: fc.integer({ min: 1, max: 40 }),
      profile: fc.constantFrom(0, 3, 4),
      seed: fc.nat(1000),
      mask: fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }),
    });
    const poison = (i: number) => (i % 2 ? NaN : 1e10);
    await fc.assert(
      fc.asyncProperty(shapes, async ({ tq, tk, profile, seed, mask }) => {
        const m = mask.slice(0, tk).map((b) => (b ? 1 : 0));
        const hide = (a: NDArray) =>
          ndarray(
            a.shape,
            a.data.map((x, i) => (m[Math.floor(i / c)] ? poison(i) : x)),
          );
        const outs = await check(
          g,
          {
            q: randn([tq, c], seed, 2),
            k: hide(randn([tk, c], seed + 1, 2)),
            v: hide(randn([tk, c], seed + 2)),
            m: nd([tk], m),
          },
          { T: 9, S: 40 },
          profile ? tiny(gpu!.limits, d, profile) : undefined,
        );
        for (const o of outs) expect(o.data.every(Number.isFinite)).toBe(true);
      }),
      { numRuns: 40, seed: 7 },
    );
  });
});

describe.skipIf(!gpu)("attention_cached", SLOW, () => {
  /** A causal self-attention over strided thirds of one [T, 3C] projection (a map before it, so
   *  q/k/v live in a temp), T ≤ `cap`: the KV cache is on. */
  const cachedGraph = (heads: number, d: number, cap: number) => {
    const c = heads * d;
    return `graph @t(%x: f32[T,${3 * c}]) -> (f32[T,${c}]) {
  dim T <= ${cap} "the test's context"
  %qkv = map(%x) {expr="mul($0, 1.5)"} : f32[T,${3 * c}]
  %q = slice(%qkv) {axis=1, start=0, size=${c}} : f32[T,${c}]
  %k = slice(%qkv) {axis=1, start=${c}, size=${c}} : f32[T,${c}]
  %v = slice(%qkv) {axis=1, start=${2 * c}, size=${c}} : f32[T,${c}]
  %a = attention(%q, %k, %v) {heads=${heads}, scale=${1 / Math.sqrt(d)}, causal=true} : f32[T,${c}]
  return %a
}`;
  };

  const rowsOf = (a: NDArray, from: number, to: number) => {
    const w = a.shape[1];
    return ndarray([to - from, w], a.data.slice(from * w, to * w));
  };

  /** One full forward over `x`, then a prefill of chunks[0] rows and a step per further chunk;
   *  each call's rows against the interpreter's and against the full forward's same rows. */
  async function incremental(p: WgslPair, x: NDArray, chunks: readonly number[]): Promise<NDArray> {
    const fwd = await p.run(new Map([["x", x]]));
    expect(relError(fwd.got[0], fwd.want[0])).toBeLessThanOrEqual(TOL);
    const full = fwd.got[0];
    let at = 0;
    for (const [n, size] of chunks.entries()) {
      const feed = new Map([["x", rowsOf(x, at, at + size)]]);
      const { got, want } = n === 0 ? await p.run(feed) : await p.step(feed);
      expect(relError(got[0], want[0]), `call ${n}`).toBeLessThanOrEqual(TOL);
      expect(relError(got[0], rowsOf(full, at, at + size)), `call ${n}`).toBeLessThanOrEqual(TOL);
      at += size;
      expect(p.session.cachedLength).toBe(at);
    }
    return full;
  }

  it.each([
    [2, 3, 12, [[5, 1, 3, 1, 2], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [12]], true],
    [2, 64, 40, [[20, 13, 1, 1, 5]], true],
    [1, 128, 24, [[3, 1, 1, 19]], false],
  ] as const)(
    "heads %i of D = %i, capacity %i: prefill then steps %j = one full forward, to capacity",
    async (heads, d, cap, patterns, alsoTiny) => {
      const g = cachedGraph(heads, d, cap);
      const prog = lower(parseGraph(g));
      expect(prog.kvCache.enabled).toBe(true);
      expect(prog.kernels.map((k) => k.body.kind)).toEqual(["expr", "attention_cached"]);
      const x = randn([cap, 3 * heads * d], heads * d + cap);
      const profiles = alsoTiny ? [gpu!.limits, tiny(gpu!.limits, d)] : [gpu!.limits];
      for (const limits of profiles) {
        const p = await pairOf(g, {}, limits);
        for (const chunks of patterns) {
          await incremental(p, x, chunks);
          expect(p.session.cachedLength).toBe(cap);
          // One more position would exceed the cache (runtime/webgpu/session.ts refuses it).
          await expect(p.step(new Map([["x", rowsOf(x, 0, 1)]]))).rejects.toThrow(
            new RegExp(`${cap} cached \\+ 1 new positions exceed the KV cache's ${cap} rows`),
          );
        }
      }
    },
  );

  it("a step of several rows past the capacity is refused and leaves the cache usable", async () => {
    const g = cachedGraph(2, 3, 12);
    const x = randn([12, 18], 3);
    const p = await pairOf(g, {});
    const full = await incremental(p, x, [8]);
    await expect(p.step(new Map([["x", x]]))).rejects.toThrow(
      /8 cached \+ 12 new positions exceed the KV cache's 12 rows/,
    );
    expect(p.session.cachedLength).toBe(8);
    const { got, want } = await p.step(new Map([["x", rowsOf(x, 8, 12)]]));
    expect(relError(got[0], want[0])).toBeLessThanOrEqual(TOL);
    expect(relError(got[0], rowsOf(full, 8, 12))).toBeLessThanOrEqual(TOL);
  });
});
