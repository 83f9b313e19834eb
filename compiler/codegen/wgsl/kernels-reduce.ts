/** The row_reduction family as WGSL: softmax, layer_norm and reduce. Each computes what the
 *  Program interpreter's body does (compiler/lower/kernels-reduce.ts), in f32.
 *
 *  Layout: one workgroup per row (every index of the axes but the reduced one), `wg` the linear
 *  row index (the runtime folds a dispatch over 65535 workgroups into two dimensions). The row's
 *  invocations stride over its elements (element k goes to invocation k mod N, so neighbouring
 *  invocations read neighbouring elements of a contiguous row), keep partial results in
 *  registers, and combine them by a tree reduction in workgroup memory (log2 N halving steps).
 *  The workgroup size N is a power of two: at least 32 (a subgroup's width on most GPUs), at
 *  most the profile's limit and what the longest row at capacity needs. Rows of any length work:
 *  1, odd, shorter or much longer than N.
 *  reduce is the one exception: when the reduced axis is strided (not the innermost), a
 *  workgroup takes COLS consecutive output elements at once (column c = lid mod COLS, part
 *  lid / COLS striding along the axis), so the invocations of a workgroup read neighbouring
 *  addresses instead of one element per row stride.
 *
 *  Rules:
 *  - Uniformity: workgroupBarrier() runs in uniform control flow. The only early `return` is the
 *    whole workgroup's, on `wg` against the row count (uniform); everything that depends on
 *    `lid` (an invocation past the row's end, a column past the last row) skips work inside
 *    `if`s and still reaches every barrier.
 *  - softmax is online: one pass keeps each invocation's running max m and Σ exp(v − m), pairs
 *    are merged by rescaling to the larger max (m, l) ⊕ (m', l') = (M, l·e^(m−M) + l'·e^(m'−M)),
 *    and a second pass writes exp(v − M) / L. So x is read twice, never held.
 *  - Masking (scale, the causal rule key j > query i + (Tk − Tq) with i = row mod Tq as the
 *    interpreter has it, the mask operand ≠ 0) decides before x is read: a hidden element is
 *    never loaded, so NaN or 1e10 there cannot leak. NEG_BIG is the empty max; a running sum of
 *    0 marks "nothing visible yet", and every rescale is select()ed on it, so no arithmetic on the
 *    sentinel ever reaches a result. A row with nothing visible gives zeros (L = 0 ⇒ 1/L := 0).
 *  - layer_norm: the prologue expr is evaluated once per element. When the row length is a
 *    constant and each invocation holds at most HELD elements, the row stays in registers and the
 *    variance is the exact two-pass Σ (v − mean)² (one read of the operands). Otherwise
 *    (symbolic or very long rows) each invocation runs Welford's update and the tree merges
 *    (count, mean, M2) with Chan's formula, then a second pass re-evaluates the expr to write.
 *  - reduce: f32 partial sums per invocation, then the tree (pairwise, not one long sum). */
import type { Shape } from "../../ir/shape.ts";
import type { KernelBody, View } from "../../lower/program.ts";
import { symNumber, symOfDim, symProduct, type SymInt } from "../../lower/sym.ts";
import { renderExpr, renderNumber } from "../expr-source.ts";
import { coalesce } from "../ts/source.ts";
import { atom, NEG_BIG, plus, u32, type WgslKernel, type WgslScope } from "./kernel.ts";

/** Values at or below this are the −∞ sentinel (see softmax). */
const HIDDEN = "-1.7e38";
import { outputView } from "./kernels-map.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

/** The smallest workgroup a row gets: a subgroup's width on most GPUs. */
const MIN_GROUP = 32;
/** The most row elements one invocation holds in registers (layer_norm's two-pass path). */
export const HELD = 32;
/** Output elements a strided reduce's workgroup takes at once. */
const COLS = 32;

const without = <T>(xs: readonly T[], axis: number): T[] => xs.filter((_, i) => i !== axis);
const floorPow2 = (n: number): number => 2 ** Math.floor(Math.log2(Math.max(1, n)));
const ceilPow2 = (n: number): number => (n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n)));

/** The largest power-of-two workgroup the profile allows, up to `want`. */
function maxGroup(s: WgslScope, want = 256): number {
  return floorPow2(s.workgroupSize(want));
}

/** A power of two in [MIN_GROUP, the profile's limit], no larger than `len` at capacity needs. */
function groupSize(s: WgslScope, len: SymInt): number {
  const max = maxGroup(s);
  const n = s.atCapacity(len);
  return Math.min(max, Number.isFinite(n) ? Math.max(MIN_GROUP, ceilPow2(n)) : max);
}

/** Lines that split row index `r` into coordinates of the axes of `shape` but `axis` (row-major,
 *  merged where every view's strides chain) and bind `names[i]`, view i's element index of the
 *  row's start. */
function rowStarts(
  s: WgslScope,
  shape: Shape,
  axis: number,
  views: readonly View[],
  r: string,
  names: readonly string[],
): string[] {
  const nest = coalesce(
    without(shape, axis),
    views.map((v) => without(v.strides, axis)),
  );
  const at = views.map((v) => s.view(v).at);
  const sizes = nest.sizes.map((x) => s.sym(x));
  const lines: string[] = [];
  const coords: string[] = [];
  let rest = r;
  for (let k = sizes.length - 1; k >= 0; k--) {
    if (k === 0) {
      coords[0] = rest;
      break;
    }
    lines.push(`let c${k} = ${atom(rest)} % ${atom(sizes[k])};`);
    lines.push(`let r${k} = ${atom(rest)} / ${atom(sizes[k])};`);
    coords[k] = `c${k}`;
    rest = `r${k}`;
  }
  views.forEach((_, i) => {
    const start = coords.reduce((acc, c, k) => plus(acc, c, s.sym(nest.strides[i][k])), at[i]);
    lines.push(`let ${names[i]} = ${start};`);
  });
  return lines;
}

/** A tree reduction over `size` lanes of workgroup memory: `step(a, b)` gives the statements
 *  that merge lane `b` into lane `a`. Runs in uniform control flow (constant bounds), every
 *  barrier outside the `if`. The result is in lane 0 (lane `c` for `cols` interleaved columns). */
function tree(
  size: number,
  step: (a: string, b: string) => string[],
  cols = 1,
  part = "lid",
): string[] {
  if (size <= 1) return [];
  const other = cols === 1 ? "lid + st" : `lid + st * ${u32(cols)}`;
  return [
    `for (var st = ${u32(size / 2)}; st > 0u; st = st >> 1u) {`,
    `  if (${part} < st) {`,
    ...step("lid", other).map((l) => `    ${l}`),
    `  }`,
    `  workgroupBarrier();`,
    `}`,
  ];
}

/** The source of "this value is zero" for an element of the buffer's type. */
function isZero(s: WgslScope, buffer: number, value: string): string {
  return `${value} == ${s.elem(buffer) === "i32" ? "0i" : "0.0"}`;
}

/** An operand's element as an f32 value. */
function readF32(s: WgslScope, buffer: number, index: string): string {
  const r = s.read(buffer, index);
  return s.elem(buffer) === "i32" ? `f32(${r})` : r;
}

/** softmax(masked(x · scale)) along the axis: online max and sum, then the write pass. */
export function softmax(s: WgslScope, b: Body<"softmax">, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const [x, mask] = s.kernel.inputs;
  const views = b.masked ? [out, x, mask] : [out, x];
  const rank = out.shape.length;
  const len = symOfDim(out.shape[b.axis]);
  const rows = symProduct(without(out.shape, b.axis));
  const size = groupSize(s, len);
  const [so, sx, sm] = views.map((v) => s.sym(v.strides[b.axis]));
  const scale = b.scale === 1 ? "" : ` * ${renderNumber(b.scale, "wgsl")}`;
  const visible = [
    ...(b.causal ? ["k + tq <= q + n"] : []),
    ...(b.masked ? [isZero(s, mask.buffer, s.read(mask.buffer, plus("m_at", "k", sm)))] : []),
  ];
  const raw = readF32(s, x.buffer, plus("x_at", "k", sx));
  const value = `xk${scale}`;
  // A value at or below half the f32 range is the −∞ sentinel (causal_mask and masked_fill write
  // NEG_BIG where the reference writes −∞): hidden too, so a row of sentinels gives zeros as the
  // reference's row of −∞ does. NaN stays visible (`!(x <= …)`), as it propagates there.
  const ifVisible = (lines: string[]): string[] => {
    const inner = [
      `let xk = ${raw};`,
      `if (!(xk <= ${HIDDEN})) {`,
      ...lines.map((l) => `  ${l}`),
      `}`,
    ];
    return visible.length
      ? [`if (${visible.join(" && ")}) {`, ...inner.map((l) => `  ${l}`), `}`]
      : inner;
  };
  const decls = [s.workgroupArray("red_m", "f32", size), s.workgroupArray("red_l", "f32", size)];
  const body = [
    `if (wg >= ${atom(s.sym(rows))}) {`,
    `  return;`,
    `}`,
    `let n = ${s.sym(len)};`,
    ...rowStarts(s, out.shape, b.axis, views, "wg", ["o_at", "x_at", "m_at"]),
    ...(b.causal
      ? [
          `let tq = ${rank >= 2 ? s.dim(out.shape[rank - 2]) : "1u"};`,
          `let q = wg % tq; // the query index: key k > q + (n - tq) is hidden`,
        ]
      : []),
    `// Pass 1, online: this invocation's max m of its visible values and l = Σ exp(v - m).`,
    `var m = ${NEG_BIG};`,
    `var l = 0.0;`,
    `for (var k = lid; k < n; k += ${u32(size)}) {`,
    ...ifVisible([
      `let v = ${value};`,
      `let mn = max(m, v);`,
      `l = select(0.0, l * exp(m - mn), l > 0.0) + exp(v - mn);`,
      `m = mn;`,
    ]).map((l) => `  ${l}`),
    `}`,
    `red_m[lid] = m;`,
    `red_l[lid] = l;`,
    `workgroupBarrier();`,
    ...tree(size, (a, o) => [
      `let ma = red_m[${a}];`,
      `let mb = red_m[${o}];`,
      `let la = red_l[${a}];`,
      `let lb = red_l[${o}];`,
      `let mn = max(ma, mb);`,
      `red_l[${a}] = select(0.0, la * exp(ma - mn), la > 0.0) + select(0.0, lb * exp(mb - mn), lb > 0.0);`,
      `red_m[${a}] = mn;`,
    ]),
    `let row_max = red_m[0];`,
    `let row_sum = red_l[0];`,
    `// Nothing visible: every output is 0.`,
    `let inv = select(0.0, 1.0 / row_sum, row_sum > 0.0);`,
    `// Pass 2: exp(v - max) / sum where visible, 0 where hidden.`,
    `for (var k = lid; k < n; k += ${u32(size)}) {`,
    `  var p = 0.0;`,
    ...ifVisible([`p = exp(${value} - row_max) * inv;`]).map((l) => `  ${l}`),
    `  ${s.write(out.buffer, plus("o_at", "k", so), "p")}`,
    `}`,
  ];
  return s.finish({
    doc: [...doc, `one workgroup of ${size} per row; online softmax, tree-merged (max, sum)`],
    workgroupSize: size,
    workgroups: { count: rows, per: 1 },
    body,
    decls,
  });
}

/** (γ, β, xs…): layer_norm(expr(xs)) over the last axis. */
export function layerNorm(s: WgslScope, b: Body<"layer_norm">, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const [g, beta, ...xs] = s.kernel.inputs;
  const rank = out.shape.length;
  const axis = rank - 1;
  const len = symOfDim(out.shape[axis]);
  const rows = symProduct(out.shape.slice(0, axis));
  const size = groupSize(s, len);
  const names = xs.map((_, i) => `a${i}_at`);
  const [so, ...steps] = [out, ...xs].map((v) => s.sym(v.strides[axis]));
  const [gv, bv] = [g, beta].map((v) => s.view(v));
  const e = renderExpr(b.expr, {
    target: "wgsl",
    input: (i) => readF32(s, xs[i].buffer, plus(names[i], "k", steps[i])),
    temp: "t",
  });
  const eps = renderNumber(b.eps, "wgsl");
  const write = (v: string) =>
    s.write(
      out.buffer,
      plus("o_at", "k", so),
      `(${v} - mean) * inv * ${readF32(s, g.buffer, plus(gv.at, "k", gv.strides[0]))} + ${readF32(s, beta.buffer, plus(bv.at, "k", bv.strides[0]))}`,
    );
  const c = symNumber(len);
  const held = c === undefined ? Infinity : Math.ceil(c / size);
  const head = [
    `if (wg >= ${atom(s.sym(rows))}) {`,
    `  return;`,
    `}`,
    `let c = ${s.sym(len)};`,
    ...rowStarts(s, out.shape, axis, [out, ...xs], "wg", ["o_at", ...names]),
  ];
  const sumStep = (name: string) => (a: string, o: string) => [
    `${name}[${a}] = ${name}[${a}] + ${name}[${o}];`,
  ];
  if (held <= HELD) {
    // The row in registers: element k = lid + j·N is held[j].
    const each = (lines: string[]): string[] => [
      `for (var j = 0u; j < ${u32(held)}; j++) {`,
      `  let k = lid + j * ${u32(size)};`,
      `  if (k < c) {`,
      ...lines.map((l) => `    ${l}`),
      `  }`,
      `}`,
    ];
    const decls = [s.workgroupArray("red_s", "f32", size), s.workgroupArray("red_d", "f32", size)];
    return s.finish({
      doc: [
        ...doc,
        `one workgroup of ${size} per row, ${held} held per invocation; two-pass variance`,
      ],
      workgroupSize: size,
      workgroups: { count: rows, per: 1 },
      body: [
        ...head,
        `var held: array<f32, ${held}>;`,
        `var sum = 0.0;`,
        ...each([...e.temps, `let v = ${e.value};`, `held[j] = v;`, `sum += v;`]),
        `red_s[lid] = sum;`,
        `workgroupBarrier();`,
        ...tree(size, sumStep("red_s")),
        `let mean = red_s[0] / f32(c);`,
        `var dev = 0.0;`,
        ...each([`let d = held[j] - mean;`, `dev += d * d;`]),
        `red_d[lid] = dev;`,
        `workgroupBarrier();`,
        ...tree(size, sumStep("red_d")),
        `let inv = inverseSqrt(red_d[0] / f32(c) + ${eps});`,
        ...each([write("held[j]")]),
      ],
      decls,
      helpers: e.helpers,
    });
  }
  // Welford per invocation, Chan's merge in the tree, a second pass to write.
  const decls = [
    s.workgroupArray("red_n", "f32", size),
    s.workgroupArray("red_u", "f32", size),
    s.workgroupArray("red_q", "f32", size),
  ];
  const each = (lines: string[]): string[] => [
    `for (var k = lid; k < c; k += ${u32(size)}) {`,
    ...e.temps.map((l) => `  ${l}`),
    `  let v = ${e.value};`,
    ...lines.map((l) => `  ${l}`),
    `}`,
  ];
  return s.finish({
    doc: [...doc, `one workgroup of ${size} per row; Welford per invocation, Chan's merge`],
    workgroupSize: size,
    workgroups: { count: rows, per: 1 },
    body: [
      ...head,
      `var cnt = 0.0;`,
      `var mu = 0.0;`,
      `var m2 = 0.0;`,
      ...each([`cnt += 1.0;`, `let d = v - mu;`, `mu += d / cnt;`, `m2 += d * (v - mu);`]),
      `red_n[lid] = cnt;`,
      `red_u[lid] = mu;`,
      `red_q[lid] = m2;`,
      `workgroupBarrier();`,
      ...tree(size, (a, o) => [
        `let na = red_n[${a}];`,
        `let nb = red_n[${o}];`,
        `let n = na + nb;`,
        `let f = select(0.0, nb / n, nb > 0.0);`,
        `let d = red_u[${o}] - red_u[${a}];`,
        `red_u[${a}] = red_u[${a}] + d * f;`,
        `red_q[${a}] = red_q[${a}] + red_q[${o}] + d * d * na * f;`,
        `red_n[${a}] = n;`,
      ]),
      `let mean = red_u[0];`,
      `let inv = inverseSqrt(red_q[0] / f32(c) + ${eps});`,
      ...each([write("v")]),
    ],
    decls,
    helpers: e.helpers,
  });
}

/** Sum (or mean) along the axis, which the result keeps with size 1. */
export function reduce(s: WgslScope, b: Body<"reduce">, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const x = s.kernel.inputs[0];
  const len = symOfDim(x.shape[b.axis]);
  const rows = symProduct(out.shape);
  const strided = symNumber(x.strides[b.axis]) !== 1;
  const max = maxGroup(s);
  const rowsAt = s.atCapacity(rows);
  const cols = strided ? Math.min(COLS, max, Number.isFinite(rowsAt) ? ceilPow2(rowsAt) : COLS) : 1;
  const lenAt = s.atCapacity(len);
  const parts =
    cols === 1
      ? groupSize(s, len)
      : Math.min(max / cols, Number.isFinite(lenAt) ? ceilPow2(lenAt) : max / cols);
  const size = cols * parts;
  const sx = s.sym(x.strides[b.axis]);
  const total = `${s.sym(len)}`;
  const result = b.mean ? "red[lid] / f32(n)" : "red[lid]";
  const body = [
    `let rows = ${s.sym(rows)};`,
    cols === 1 ? `if (wg >= rows) {` : `if (wg >= (rows + ${u32(cols - 1)}) / ${u32(cols)}) {`,
    `  return;`,
    `}`,
    `let n = ${total};`,
    ...(cols === 1
      ? [`let part = lid;`, `let row = wg;`]
      : [
          `let part = lid / ${u32(cols)};`,
          `let row = wg * ${u32(cols)} + lid % ${u32(cols)}; // neighbouring lanes, neighbouring columns`,
        ]),
    ...rowStarts(s, x.shape, b.axis, [out, x], "row", ["o_at", "x_at"]),
    `var acc = 0.0;`,
    `if (row < rows) {`,
    `  for (var k = part; k < n; k += ${u32(parts)}) {`,
    `    acc += ${readF32(s, x.buffer, plus("x_at", "k", sx))};`,
    `  }`,
    `}`,
    `red[lid] = acc;`,
    `workgroupBarrier();`,
    ...tree(parts, (a, o) => [`red[${a}] = red[${a}] + red[${o}];`], cols, "part"),
    `if (part == 0u && row < rows) {`,
    `  ${s.write(out.buffer, "o_at", result)}`,
    `}`,
  ];
  return s.finish({
    doc: [
      ...doc,
      cols === 1
        ? `one workgroup of ${size} per output element`
        : `one workgroup of ${size} per ${cols} output elements (${parts} lanes each)`,
    ],
    workgroupSize: size,
    workgroups: { count: rows, per: cols },
    body,
    decls: [s.workgroupArray("red", "f32", size)],
  });
}
