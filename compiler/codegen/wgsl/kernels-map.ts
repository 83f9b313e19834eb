/** The map and gather families as WGSL: one invocation per output element (a sinusoidal: per
 *  sin/cos pair). The output is written row-major; each operand is read through its view's
 *  strides (pre-broadcast operands have stride 0 where they repeat). Axes are merged where every
 *  view's strides chain (`coalesce`), so a contiguous elementwise kernel decomposes its index
 *  into one or two coordinates only. Each body computes what the Program interpreter's
 *  (compiler/lower/kernels-map.ts) does, in f32, with these differences, all forced by WGSL's
 *  finite math and the absence of exceptions on a GPU:
 *  - causal_mask writes the finite sentinel NEG_BIG where the interpreter writes −∞, and a
 *    masked_fill whose value is ±∞ (or beyond f32) writes ±NEG_BIG; softmax and attention treat
 *    a score ≤ NEG_BIG as masked, so the results after them are the same.
 *  - gather: an id outside [0, V) cannot throw; its output row is written as zeros (never read
 *    out of bounds). The runners check ids before they run, so this is only a safety net.
 *  - sinusoidal reduces the angle exactly in integer arithmetic: position·freq/2π in turns, as a
 *    32-bit fixed-point fraction from a 64-bit constant per frequency, so sin and cos only ever
 *    see an argument in [−π, π] (their accurate range on every GPU), at any position.
 *  Every generator guards its invocations against its own count: the dispatch may be rounded up
 *  and folded into two dimensions (kernel.ts). */
import type { Expr } from "../../ir/expr.ts";
import type { KernelBody, View } from "../../lower/program.ts";
import { symAdd, symMul, symOfDim, symProduct, symScale, type SymInt } from "../../lower/sym.ts";
import { fail } from "../../errors.ts";
import { renderExpr, renderNumber } from "../expr-source.ts";
import { coalesce, rowMajor } from "../ts/source.ts";
import { NEG_BIG, atom, plus, type WgslKernel, type WgslScope } from "./kernel.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

/** The kernel's output as a row-major view of its whole buffer. */
export function outputView(s: WgslScope): View {
  const b = s.program.buffers[s.kernel.output];
  return { buffer: b.id, offset: [], shape: b.shape, strides: rowMajor(b.shape) };
}

export interface Elementwise {
  /** Elements in the walk (the output's element count). */
  readonly count: SymInt;
  /** Statements that bind `i` (this invocation's element) and return when it is past the end,
   *  then the coordinates `c0, c1, …` of the merged axes. */
  readonly lines: readonly string[];
  /** Per view (in the order given), the source of its element index at `i`. */
  readonly index: readonly string[];
}

/** The invocation's work item `i = wg * size + lid`, and a return when it is past `count`. */
function workItem(s: WgslScope, count: SymInt, workgroupSize: number): string[] {
  return [`let i = wg * ${workgroupSize}u + lid;`, `if (i >= ${s.sym(count)}) {`, `  return;`, `}`];
}

/** The element indices of `views` (all of shape `shape`) at the row-major position `linear` of
 *  `shape`: statements binding the coordinates of the merged axes (`${v}c<k>`, with remainders
 *  `${v}r<k>`), then one index expression per view. */
function coordinates(
  s: WgslScope,
  shape: View["shape"],
  views: readonly View[],
  linear: string,
  v = "",
): { lines: string[]; index: string[] } {
  const nest = coalesce(
    shape,
    views.map((x) => x.strides),
  );
  const at = views.map((x) => s.view(x).at);
  const sizes = nest.sizes.map((x) => s.sym(x));
  const lines: string[] = [];
  // Coordinates, innermost axis fastest: c_k = (i / Π sizes after k) % size_k.
  const coords: string[] = [];
  let rest = linear;
  for (let k = sizes.length - 1; k >= 0; k--) {
    if (k === 0) {
      coords[k] = rest;
      break;
    }
    lines.push(`let ${v}c${k} = ${atom(rest)} % ${atom(sizes[k])};`);
    coords[k] = `${v}c${k}`;
    const next = `${v}r${k}`;
    lines.push(`let ${next} = ${atom(rest)} / ${atom(sizes[k])};`);
    rest = next;
  }
  const index = views.map((_, x) =>
    coords.reduce((acc, c, k) => plus(acc, c, s.sym(nest.strides[x][k])), at[x]),
  );
  return { lines, index };
}

/** One invocation per element of `shape`, walking `views` together: the invocation's element
 *  `i = wg * size + lid`, its coordinates on the merged axes, each view's element index. */
export function elementwise(
  s: WgslScope,
  shape: View["shape"],
  views: readonly View[],
  workgroupSize: number,
): Elementwise {
  const count = symProduct(shape);
  const walk = coordinates(s, shape, views, "i");
  return { count, lines: [...workItem(s, count, workgroupSize), ...walk.lines], index: walk.index };
}

/** An operand's element as an f32 value. */
function readF32(s: WgslScope, buffer: number, index: string): string {
  const r = s.read(buffer, index);
  return s.elem(buffer) === "i32" ? `f32(${r})` : r;
}

/** A value of the output's type. */
function toOutput(s: WgslScope, value: string): string {
  return s.elem(s.kernel.output) === "i32" ? `i32(${value})` : value;
}

const render = (e: Expr, input: (i: number) => string) =>
  renderExpr(e, { target: "wgsl", input, temp: "t" });

/** out[i] = expr(x0[i], x1[i], …) */
export function mapExpr(s: WgslScope, b: Body<"expr">, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const ins = s.kernel.inputs;
  const size = s.workgroupSize();
  const walk = elementwise(s, out.shape, [out, ...ins], size);
  const r = render(b.expr, (i) => readF32(s, ins[i].buffer, walk.index[i + 1]));
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count: walk.count, per: size },
    body: [...walk.lines, ...r.temps, s.write(out.buffer, walk.index[0], toOutput(s, r.value))],
    helpers: r.helpers,
  });
}

/** out (row-major) ← x's elements in x's row-major order: a reshape no strides express (the
 *  output buffer seen with x's shape). */
export function copy(s: WgslScope, doc: readonly string[]): WgslKernel {
  const x = s.kernel.inputs[0];
  const out: View = { ...outputView(s), shape: x.shape, strides: rowMajor(x.shape) };
  const size = s.workgroupSize();
  const walk = elementwise(s, x.shape, [out, x], size);
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count: walk.count, per: size },
    body: [...walk.lines, s.write(out.buffer, walk.index[0], s.read(x.buffer, walk.index[1]))],
  });
}

/** A fill value as an f32 literal: ±∞ and values beyond f32 become ±NEG_BIG, the sentinel the
 *  softmax and attention kernels test masks against (WGSL assumes finite math). */
function fillValue(v: number): string {
  if (Number.isNaN(v)) return renderNumber(v, "wgsl"); // fails: NaN has no WGSL form
  if (Number.isFinite(Math.fround(v))) return renderNumber(v, "wgsl");
  return v > 0 ? NEG_BIG.slice(1) : NEG_BIG;
}

/** out = mask ≠ 0 ? value : x (mask of either dtype). */
export function maskedFill(
  s: WgslScope,
  b: Body<"masked_fill">,
  doc: readonly string[],
): WgslKernel {
  const out = outputView(s);
  const [x, m] = s.kernel.inputs;
  const size = s.workgroupSize();
  const walk = elementwise(s, out.shape, [out, x, m], size);
  const zero = s.elem(m.buffer) === "i32" ? "0i" : "0.0";
  const value = `select(${s.read(x.buffer, walk.index[1])}, ${fillValue(b.value)}, ${s.read(m.buffer, walk.index[2])} != ${zero})`;
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count: walk.count, per: size },
    body: [...walk.lines, s.write(out.buffer, walk.index[0], value)],
  });
}

/** NEG_BIG (for −∞) where key j > query q + (Tk − Tq), over the last two axes; `i` is the
 *  output's row-major position, so j = i % Tk and q = (i / Tk) % Tq. The test is written
 *  j + Tq > q + Tk, which never goes below zero in u32. */
export function causalMask(s: WgslScope, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const x = s.kernel.inputs[0];
  const r = out.shape.length;
  const [tq, tk] = [s.dim(out.shape[r - 2]), s.dim(out.shape[r - 1])];
  const size = s.workgroupSize();
  const walk = elementwise(s, out.shape, [out, x], size);
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count: walk.count, per: size },
    body: [
      ...walk.lines,
      `let key = i % ${atom(tk)};`,
      `let query = (i / ${atom(tk)}) % ${atom(tq)};`,
      s.write(
        out.buffer,
        walk.index[0],
        `select(${s.read(x.buffer, walk.index[1])}, ${NEG_BIG}, key + ${atom(tq)} > query + ${atom(tk)})`,
      ),
    ],
  });
}

/** out[i] = start + i, i32 (start may be symbolic: P for a range over T in a step). */
export function range(s: WgslScope, b: Body<"range">, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  s.view(out);
  const start = s.dim(b.start);
  const count = symOfDim(out.shape[0]);
  const size = s.workgroupSize();
  const value = start === "0u" ? "i" : `${start} + i`;
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count, per: size },
    body: [
      ...workItem(s, count, size),
      s.write(
        out.buffer,
        "i",
        s.elem(out.buffer) === "i32" ? `i32(${value})` : `f32(i32(${value}))`,
      ),
    ],
  });
}

const TWO_32 = 2 ** 32;

/** The turns per position of frequency k, freq_k / 2π with freq_k = 10000^(−2k/dim) (computed as
 *  the interpreter does), as a 64-bit fixed-point fraction: [high word, low word]. */
export function sinusoidalTurns(dim: number): [number, number][] {
  return Array.from({ length: dim / 2 }, (_, k) => {
    const freq = Math.exp((-(2 * k) * Math.log(10000)) / dim);
    const r = (freq / (2 * Math.PI)) * TWO_32; // < 2^32: freq ≤ 1
    const hi = Math.floor(r);
    return [hi, Math.floor((r - hi) * TWO_32)];
  });
}

/** PE(p, 2k) = sin(p·freq_k), PE(p, 2k+1) = cos(p·freq_k), one invocation per (t, k). The
 *  angle in turns, frac(p·freq_k / 2π), is computed exactly as a 32-bit fraction of a turn: the
 *  low word of |p|·R (R the 64-bit constant of `sinusoidalTurns`; the u32 product wraps, and the
 *  high half of |p|·R_low is added by `kiln_mulhi`), negated for p < 0. Read as an i32 it is the
 *  angle in [−π, π) in units of 2π/2^32, so sin and cos get an argument their accuracy holds
 *  for, at any i32 position. The error is f32 rounding (a few 1e-7) plus the device's sin/cos
 *  on [−π, π]. */
export function sinusoidal(
  s: WgslScope,
  b: Body<"sinusoidal">,
  doc: readonly string[],
): WgslKernel {
  const out = outputView(s);
  s.view(out);
  const pos = s.kernel.inputs[0];
  const p = s.view(pos);
  const half = b.dim / 2;
  const count = symScale(symOfDim(out.shape[0]), half);
  const size = s.workgroupSize();
  const turns = sinusoidalTurns(b.dim);
  const table = turns.map(([hi, lo]) => `vec2<u32>(${hi}u, ${lo}u)`);
  const decls = [
    `// 10000^(-2k/${b.dim}) / 2pi as a 64-bit fixed-point fraction (high word, low word)`,
    `const TURNS = array<vec2<u32>, ${half}>(`,
    ...table.map((t, k) => `  ${t}${k === table.length - 1 ? "" : ","}`),
    `);`,
    ``,
    `// The high 32 bits of the 64-bit product a * b.`,
    `fn kiln_mulhi(a: u32, b: u32) -> u32 {`,
    `  let al = a & 0xffffu;`,
    `  let ah = a >> 16u;`,
    `  let bl = b & 0xffffu;`,
    `  let bh = b >> 16u;`,
    `  let m1 = al * bh + ((al * bl) >> 16u);`,
    `  let m2 = ah * bl + (m1 & 0xffffu);`,
    `  return ah * bh + (m1 >> 16u) + (m2 >> 16u);`,
    `}`,
  ];
  const row = out.buffer;
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count, per: size },
    decls,
    body: [
      ...workItem(s, count, size),
      `let k = i % ${half}u;`,
      `let t = i / ${half}u;`,
      `let p = ${s.read(pos.buffer, plus(p.at, "t", p.strides[0]))};`,
      `let a = u32(abs(p));`,
      `let r = TURNS[k];`,
      `var w = a * r.x + kiln_mulhi(a, r.y);`,
      `if (p < 0i) {`,
      `  w = 0u - w;`,
      `}`,
      `let angle = f32(bitcast<i32>(w)) * 1.4629180792671596e-9; // 2pi / 2^32`,
      `let o = t * ${b.dim}u + 2u * k;`,
      s.write(row, "o", "sin(angle)"),
      s.write(row, "o + 1u", "cos(angle)"),
    ],
  });
}

/** The parts one after another along the axis: the invocations walk part 0's elements in its
 *  row-major order, then part 1's, …; each is written at its place in the output. */
export function concat(s: WgslScope, b: Body<"concat">, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const st = out.strides;
  const size = s.workgroupSize();
  const count = symProduct(out.shape);
  const parts = s.kernel.inputs;
  const body = workItem(s, count, size);
  let at: SymInt = []; // the part's first index along the axis
  let first: SymInt = []; // the part's first work item
  parts.forEach((x, n) => {
    const dest: View = {
      buffer: out.buffer,
      offset: symMul(at, st[b.axis]),
      shape: x.shape,
      strides: st,
    };
    const end = symAdd(first, symProduct(x.shape));
    const walk = coordinates(s, x.shape, [dest, x], n === 0 ? "i" : "j");
    const copyLines = [
      ...(n === 0 ? [] : [`let j = i - ${atom(s.sym(first))};`]),
      ...walk.lines,
      s.write(out.buffer, walk.index[0], s.read(x.buffer, walk.index[1])),
    ];
    if (n === parts.length - 1) body.push(`// part ${n}`, ...copyLines);
    else
      body.push(
        `if (i < ${s.sym(end)}) { // part ${n}`,
        ...copyLines.map((l) => `  ${l}`),
        `  return;`,
        `}`,
      );
    at = symAdd(at, symOfDim(x.shape[b.axis]));
    first = end;
  });
  return s.finish({ doc, workgroupSize: size, workgroups: { count, per: size }, body });
}

/** out[i…, r…] = table[ids[i…], r…], one invocation per output element: row = i / rowLength
 *  picks the id, the rest of i the element of the table's row (the table may be strided and
 *  chunked: s.read). An id outside [0, V) — a kernel cannot throw — gives a row of zeros; the
 *  runner checks ids before it runs. */
export function gather(s: WgslScope, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  s.view(out);
  const [table, ids] = s.kernel.inputs;
  const t = s.view(table);
  const rows = s.dim(table.shape[0]);
  const rest = table.shape.slice(1);
  const rowLength = symProduct(rest);
  const count = symProduct(out.shape);
  const size = s.workgroupSize();
  const length = s.sym(rowLength);
  const idsWalk = coordinates(s, ids.shape, [ids], "row", "q");
  const base = plus(t.at, "row_at", t.strides[0]);
  const restView: View = { ...table, offset: [], shape: rest, strides: table.strides.slice(1) };
  // The element of the row: `col` (only read when the row has more than one element).
  const restWalk = coordinates(s, rest, [restView], "col", "x");
  const zero = s.elem(out.buffer) === "i32" ? "0i" : "0.0";
  const element = restWalk.index[0] === "0u" ? "at" : `at + ${restWalk.index[0]}`;
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count, per: size },
    body: [
      ...workItem(s, count, size),
      ...(length === "1u"
        ? [`let row = i;`]
        : [`let row = i / ${atom(length)};`, `let col = i - row * ${atom(length)};`]),
      ...idsWalk.lines,
      `let id = ${s.read(ids.buffer, idsWalk.index[0])};`,
      `if (u32(id) >= ${atom(rows)}) { // outside the table (negative ids too, as u32)`,
      `  ${s.write(out.buffer, "i", zero)}`,
      `  return;`,
      `}`,
      `let row_at = u32(id);`,
      `let at = ${base};`,
      ...restWalk.lines,
      s.write(out.buffer, "i", s.read(table.buffer, element)),
    ],
  });
}

/** Until each family's generator lands. */
export function notYet(s: WgslScope, kind: KernelBody["kind"]): never {
  return fail("not-built", s.kernel.name, `the WGSL backend has no ${kind} kernel yet`);
}
