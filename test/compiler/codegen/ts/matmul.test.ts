/** The generated matmul kernel against a float64 matmul + evalExpr epilogue on the same float32
 *  inputs, over random sizes (M = 1, M, N and K not multiples of the block), schedules, both
 *  transposeB, strided and offset operands, and epilogues with bias, gelu and a residual.
 *
 *  The bound: the kernel accumulates in float64, k in order from 0 — the reference's own sum,
 *  operation for operation (a float32 × float32 product is exact in float64) — and evaluates the
 *  epilogue in float64 with the reference's formulas, so its only rounding is the final float32
 *  store: out = fround(ref) exactly, which is what these tests check. Through gelu the erf helper
 *  differs from compiler/ir/erf.ts by ~1e-15, which can move that rounding by one float32 ulp:
 *  there |out − ref| ≤ 2⁻²⁴·|ref| + 1e-12·max(1, |ref|). (A float32 accumulator would need a bound
 *  like K·2⁻²⁴·Σ|a·b|; float64 makes the test exact instead.) */
import fc from "fast-check";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { renderHelpers } from "../../../../compiler/codegen/helpers.ts";
import {
  DEFAULT_SCHEDULE,
  packedLength,
  renderMatmul,
  renderPackB,
  type Schedule,
  type MatmulSpec,
} from "../../../../compiler/codegen/ts/matmul.ts";
import { evalExpr, exprArity, parseExpr, type Expr } from "../../../../compiler/ir/expr.ts";
import { rng } from "../../util.ts";
import { load } from "../load.ts";

type Kernel = (...args: unknown[]) => void;
type Pack = (b: Float32Array, off: number) => Float32Array;

function parse(text: string): Expr {
  const e = parseExpr(text);
  if (typeof e === "string") throw new Error(e);
  return e;
}

function instantiate(spec: MatmulSpec): { kernel: Kernel; pack: Pack; source: string } {
  const k = renderMatmul(spec);
  const p = renderPackB(spec, k.name);
  const source = [renderHelpers(k.helpers, "ts"), p.source, k.source].join("\n");
  const [kernel, pack] = load<Kernel | Pack>(source, [k.name, p.name]);
  return { kernel: kernel as Kernel, pack: pack as Pack, source };
}

function randomF32(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

/** One operand in a buffer: its offset and strides, and whether each stride is baked. */
interface Placed {
  readonly data: Float32Array;
  readonly off: number;
  readonly row: number;
  readonly col: number;
  readonly bakeRow: boolean;
  readonly bakeCol: boolean;
}

/** An [rows, cols] operand at `off` with the given strides, the rest of its buffer random. */
function place(rows: number, cols: number, o: Omit<Placed, "data">, seed: number): Placed {
  const size = o.off + (rows - 1) * o.row + (cols - 1) * o.col + 1;
  return { ...o, data: randomF32(Math.max(size, 1), seed) };
}

interface Case {
  readonly M: number;
  readonly K: number;
  readonly N: number;
  readonly schedule: Schedule;
  readonly transposeB: boolean;
  readonly expr: string;
  readonly aTransposed: boolean;
  readonly pad: number;
  readonly bakeStrides: boolean;
  readonly seed: number;
  /** Call the kernel once per column range, cut at these panel indices (what threads do). */
  readonly cuts?: readonly number[];
}

const EPILOGUES = [
  "acc",
  "add(acc, $0)", // bias
  "gelu(add(acc, $0))", // bias + exact gelu
  "add(gelu_tanh(add(acc, $0)), $1)", // bias + gelu_tanh + residual
  "add(add(acc, $0), $1)", // bias + residual
  "relu(mul(add(acc, $0), add(acc, $0)))", // a temporary
];

/** Runs the generated kernel and the reference on one case; returns [out buffer, reference, off]. */
function runCase(c: Case): { out: Float32Array; ref: Float64Array; off: number; source: string } {
  const { M, K, N, pad } = c;
  const expr = parse(c.expr);
  const a: Placed = c.aTransposed
    ? place(
        M,
        K,
        { off: 1 + pad, row: 1, col: M + pad, bakeRow: c.bakeStrides, bakeCol: false },
        c.seed,
      )
    : place(
        M,
        K,
        { off: pad, row: K + pad, col: 1, bakeRow: c.bakeStrides, bakeCol: true },
        c.seed,
      );
  // b as stored: [K, N], or [N, K] when transposeB; rows padded by `pad` (a slice of a wider weight)
  const [bRows, bCols] = c.transposeB ? [N, K] : [K, N];
  const bOff = 2 * pad;
  const b = place(
    bRows,
    bCols,
    { off: bOff, row: bCols + pad, col: 1, bakeRow: true, bakeCol: true },
    c.seed + 1,
  );
  const extras: Placed[] = [
    place(M, N, { off: pad, row: 0, col: 1, bakeRow: true, bakeCol: c.bakeStrides }, c.seed + 2), // bias
    place(
      M,
      N,
      { off: 3, row: N + pad, col: 1, bakeRow: c.bakeStrides, bakeCol: c.bakeStrides },
      c.seed + 3,
    ), // residual
  ].slice(0, exprArity(expr));
  const spec: MatmulSpec = {
    name: "k0_matmul_epilogue",
    irLine: `%y = matmul_epilogue(%x, %w, ...) {transposeB=${c.transposeB}, expr=${c.expr}}`,
    K,
    N,
    transposeB: c.transposeB,
    expr,
    a: {
      name: "x",
      rowStride: a.bakeRow ? a.row : undefined,
      colStride: a.bakeCol ? a.col : undefined,
    },
    b: { name: "w", rowStride: pad > 0 ? b.row : undefined },
    extras: extras.map((x, n) => ({
      name: `e${n}`,
      rowStride: x.bakeRow ? x.row : undefined,
      colStride: x.bakeCol ? x.col : undefined,
    })),
    out: { name: "y" },
    schedule: c.schedule,
  };
  const { kernel, pack, source } = instantiate(spec);
  const packed = pack(b.data, bOff);
  expect(packed.length).toBe(packedLength(K, N, c.schedule.cols));

  const outOff = 1 + pad;
  const out = new Float32Array(outOff + M * N + 2).fill(NaN);
  const strides = (x: Placed) => [...(x.bakeRow ? [] : [x.row]), ...(x.bakeCol ? [] : [x.col])];
  const args = [
    a.data,
    a.off,
    ...strides(a),
    packed,
    ...extras.flatMap((x) => [x.data, x.off, ...strides(x)]),
    out,
    outOff,
    M,
  ];
  if (c.cuts === undefined) kernel(...args);
  else {
    // column ranges at panel boundaries, the last ending at N
    const C = c.schedule.cols;
    const at = [...new Set([0, ...c.cuts.map((p) => Math.min(p * C, N)), N])].sort((x, y) => x - y);
    for (let r = 0; r + 1 < at.length; r++) kernel(...args, at[r], at[r + 1]);
  }

  const ref = new Float64Array(M * N);
  const bAt = (k: number, j: number) =>
    c.transposeB ? b.data[bOff + j * b.row + k] : b.data[bOff + k * b.row + j];
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += a.data[a.off + i * a.row + k * a.col] * bAt(k, j);
      const xs = extras.map((x) => x.data[x.off + i * x.row + j * x.col]);
      ref[i * N + j] = evalExpr(expr, xs, acc);
    }
  return { out, ref, off: outOff, source };
}

function check(c: Case): void {
  const { out, ref, off, source } = runCase(c);
  const gelu = /\bgelu\(/.test(c.expr);
  for (let n = 0; n < ref.length; n++) {
    const [got, want] = [out[off + n], ref[n]];
    if (gelu) {
      const bound = 2 ** -24 * Math.abs(want) + 1e-12 * Math.max(1, Math.abs(want));
      if (!(Math.abs(got - want) <= bound))
        throw new Error(`element ${n}: ${got} vs ${want} (case ${JSON.stringify(c)})\n${source}`);
    } else if (!Object.is(got, Math.fround(want)))
      throw new Error(
        `element ${n}: ${got} vs fround(${want}) (case ${JSON.stringify(c)})\n${source}`,
      );
  }
  // nothing outside [off, off + M·N) is written
  expect(Array.from(out.subarray(0, off))).toEqual(Array(off).fill(NaN));
  expect(Array.from(out.subarray(off + ref.length))).toEqual([NaN, NaN]);
}

const SCHEDULES: Schedule[] = [
  DEFAULT_SCHEDULE,
  { rows: 4, cols: 8, span: 1 },
  { rows: 4, cols: 4, span: 2 },
  { rows: 2, cols: 3, span: 3 },
  { rows: 3, cols: 5, span: 1 },
  { rows: 1, cols: 1, span: 1 },
  { rows: 1, cols: 1, span: 5 },
  { rows: 1, cols: 4, span: 2 },
];

describe("generated matmul kernel", () => {
  it("equals fround(float64 matmul + epilogue) on random cases", () => {
    fc.assert(
      fc.property(
        fc.record({
          M: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 11 })),
          K: fc.integer({ min: 1, max: 19 }),
          N: fc.integer({ min: 1, max: 21 }),
          schedule: fc.constantFrom(...SCHEDULES),
          transposeB: fc.boolean(),
          expr: fc.constantFrom(...EPILOGUES),
          aTransposed: fc.boolean(),
          pad: fc.nat(2),
          bakeStrides: fc.boolean(),
          seed: fc.nat(1 << 20),
        }),
        (c) => check(c),
      ),
      { numRuns: 150 },
    );
  });

  it("gives the same values when called over column ranges at panel boundaries (threads)", () => {
    fc.assert(
      fc.property(
        fc.record({
          M: fc.integer({ min: 0, max: 8 }),
          K: fc.integer({ min: 1, max: 9 }),
          N: fc.integer({ min: 1, max: 40 }),
          schedule: fc.constantFrom(...SCHEDULES),
          transposeB: fc.boolean(),
          expr: fc.constantFrom(...EPILOGUES),
          aTransposed: fc.constant(false),
          pad: fc.nat(1),
          bakeStrides: fc.boolean(),
          seed: fc.nat(1 << 20),
          cuts: fc.array(fc.nat(14), { maxLength: 4 }),
        }),
        (c) => check(c),
      ),
      { numRuns: 120 },
    );
  });

  it("handles the GPT-2 shapes' edges: M = 1, remainder rows and a partial last panel", () => {
    const base = {
      K: 64,
      transposeB: false,
      aTransposed: false,
      pad: 0,
      bakeStrides: true,
      seed: 7,
    };
    for (const M of [1, 2, 3, 4, 5, 8, 9])
      for (const N of [8, 12, 13, 24, 25, 40])
        check({ ...base, M, N, schedule: DEFAULT_SCHEDULE, expr: "gelu(add(acc, $0))" });
    check({
      ...base,
      M: 7,
      N: 9,
      K: 300,
      schedule: { rows: 4, cols: 8, span: 2 },
      transposeB: true,
      expr: "add(add(acc, $0), $1)",
    });
  });

  it("writes nothing when M = 0", () => {
    const c = {
      M: 0,
      K: 5,
      N: 6,
      schedule: DEFAULT_SCHEDULE,
      transposeB: false,
      expr: "add(acc, $0)",
    };
    const { out } = runCase({ ...c, aTransposed: false, pad: 0, bakeStrides: true, seed: 1 });
    expect(out.every(Number.isNaN)).toBe(true);
  });

  it("packs b into zero-padded panels contiguous along K", () => {
    const spec: MatmulSpec = {
      name: "k1",
      irLine: "%y = matmul(%x, %w)",
      K: 2,
      N: 3,
      transposeB: true,
      expr: parse("acc"),
      a: { name: "x" },
      b: { name: "w" },
      extras: [],
      out: { name: "y" },
      schedule: { rows: 1, cols: 2, span: 1 },
    };
    const { pack } = instantiate(spec);
    // w stored [N, K] = [[1, 2], [3, 4], [5, 6]] after one element of offset: B = wᵀ
    const packed = pack(Float32Array.from([9, 1, 2, 3, 4, 5, 6]), 1);
    expect(Array.from(packed)).toEqual([1, 3, 2, 4, 5, 0, 6, 0]);
  });
});

describe("generated matmul source", () => {
  const gelu: MatmulSpec = {
    name: "k7_matmul_epilogue",
    irLine:
      "%h = matmul_epilogue(%ln_2, %w_fc, %b_fc) {transposeB=false, expr=gelu(add(acc, $0))} : f32[T,3072]",
    K: 768,
    N: 3072,
    transposeB: false,
    expr: parse("gelu(add(acc, $0))"),
    a: { name: "ln_2", colStride: 1 },
    b: { name: "w_fc" },
    extras: [{ name: "b_fc", rowStride: 0, colStride: 1 }],
    out: { name: "h" },
    schedule: { rows: 2, cols: 4, span: 2 },
  };

  it("matches the golden file (regenerate with UPDATE_GOLDEN=1 and review the diff)", () => {
    const k = renderMatmul(gelu);
    const text = [renderPackB(gelu, k.name).source, k.source].join("\n");
    const file = new URL("./matmul.golden.ts.txt", import.meta.url);
    if (process.env.UPDATE_GOLDEN || !existsSync(file)) writeFileSync(file, text);
    expect(text).toBe(readFileSync(file, "utf8"));
  });

  it("starts with the IR line and names parameters after the IR values", () => {
    const { source } = renderMatmul(gelu);
    expect(source.split("\n")[0]).toBe(`/** ${gelu.irLine}`);
    expect(source).toMatch(
      /export function k7_matmul_epilogue\(ln_2: Float32Array, ln_2_off: number, ln_2_row: number, w_fc: Float32Array, b_fc: Float32Array, b_fc_off: number, h: Float32Array, h_off: number, M: number, colFrom = 0, colTo = 3072\): void/,
    );
  });

  it("makes identifiers of hostile or colliding names and keeps user text inside comments", () => {
    const evil = "*/ globalThis.pwned = 1; /*\n// \u2028 x";
    const spec: MatmulSpec = {
      name: "finish",
      irLine: `%${evil} = matmul_epilogue(...)`,
      K: 3,
      N: 5,
      transposeB: false,
      expr: parse("add(add(acc, $0), $1)"),
      a: { name: evil, colStride: 1 },
      b: { name: "class" },
      extras: [
        { name: "acc", rowStride: 0, colStride: 1 },
        { name: "acc", rowStride: 5, colStride: 1 },
      ],
      out: { name: "kiln_erf" },
      schedule: { rows: 2, cols: 2, span: 2 },
    };
    const { kernel, pack, source } = instantiate(spec);
    const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    // outside comments, the user text survives only as letters of identifiers
    expect(code).not.toMatch(/globalThis\.|pwned =|\bclass\b|\u2028|\*\//);
    expect(code).toMatch(/\bglobalThis_pwned_1_x_off\b/);
    expect(source).toMatch(/export function finish_2\(/);
    expect(source).toMatch(/\bv_kiln_erf\[v_kiln_erf_off \+ row \* N \+ col\] = /);
    expect(source).toMatch(/acc_2\[acc_2_off \+ col\] \+ acc_3\[acc_3_off \+ row \* 5 \+ col\]/);
    // and it still computes: a 2×3 times 3×5 with bias 0 and residual 0
    const out = new Float32Array(10);
    kernel(
      Float32Array.from([1, 2, 3, 4, 5, 6]),
      0,
      3,
      pack(
        Float32Array.from({ length: 15 }, (_, i) => i),
        0,
      ),
      new Float32Array(5),
      0,
      new Float32Array(10),
      0,
      out,
      0,
      2,
    );
    expect(Array.from(out)).toEqual([40, 46, 52, 58, 64, 85, 100, 115, 130, 145]);
    expect((globalThis as { pwned?: number }).pwned).toBeUndefined();
  });

  it("refuses an epilogue that reads an extra it was not given", () => {
    expect(() => renderMatmul({ ...gelu, extras: [] })).toThrow(
      /reads \$0, but there are 0 extras/,
    );
  });
});
