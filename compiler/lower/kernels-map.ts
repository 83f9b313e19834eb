/** The map and gather families in the Program interpreter: one output element at a time, every
 *  operand read through its strides (pre-broadcast operands have stride 0 where they repeat).
 *  Written as generated code will be: an index walk, no whole-tensor op evals. */
import { fail } from "../errors.ts";
import { evalExpr, type Expr } from "../ir/expr.ts";
import { count, rowMajorStrides, walk, type Strided } from "./strided.ts";

export interface KernelContext {
  /** `@graph %node`, for errors. */
  readonly where: string;
}

export function mapExpr(expr: Expr, ins: readonly Strided[], out: Strided): void {
  const xs = new Array<number>(ins.length);
  walk(out.shape, [out, ...ins], (_i, offs) => {
    for (let k = 0; k < ins.length; k++) xs[k] = ins[k].data[offs[k + 1]];
    out.data[offs[0]] = evalExpr(expr, xs);
  });
}

/** out (row-major) ← x in x's row-major order: a reshape that no strides express. */
export function copy(x: Strided, out: Strided): void {
  walk(x.shape, [x], (i, o) => (out.data[out.offset + i] = x.data[o[0]]));
}

export function maskedFill(value: number, [x, m]: readonly Strided[], out: Strided): void {
  walk(
    out.shape,
    [out, x, m],
    (_i, o) => (out.data[o[0]] = m.data[o[2]] !== 0 ? value : x.data[o[1]]),
  );
}

/** −∞ where key j > query i + (Tk − Tq), over the last two axes. */
export function causalMask(x: Strided, out: Strided): void {
  const r = out.shape.length;
  const [tq, tk] = [out.shape[r - 2], out.shape[r - 1]];
  walk(out.shape, [out, x], (i, o) => {
    const j = i % tk;
    const q = Math.floor(i / tk) % tq;
    out.data[o[0]] = j > q + (tk - tq) ? -Infinity : x.data[o[1]];
  });
}

export function range(start: number, out: Strided): void {
  for (let i = 0; i < out.shape[0]; i++) out.data[out.offset + i] = start + i;
}

/** PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)) */
export function sinusoidal(dim: number, pos: Strided, out: Strided): void {
  for (let t = 0; t < out.shape[0]; t++) {
    const p = pos.data[pos.offset + t * pos.strides[0]];
    for (let i = 0; i < dim; i += 2) {
      const angle = p * Math.exp((-i * Math.log(10000)) / dim);
      out.data[out.offset + t * dim + i] = Math.sin(angle);
      out.data[out.offset + t * dim + i + 1] = Math.cos(angle);
    }
  }
}

export function concat(axis: number, ins: readonly Strided[], out: Strided): void {
  const st = rowMajorStrides(out.shape);
  let at = 0;
  for (const x of ins) {
    const dst = { offset: out.offset + at * st[axis], strides: st };
    walk(x.shape, [x, dst], (_i, o) => (out.data[o[1]] = x.data[o[0]]));
    at += x.shape[axis];
  }
}

/** out[i…, r…] = table[ids[i…], r…] */
export function gather(table: Strided, ids: Strided, out: Strided, ctx: KernelContext): void {
  const rows = table.shape[0];
  const rest = table.shape.slice(1);
  const row = count(rest);
  const restStrides = table.strides.slice(1);
  walk(ids.shape, [ids], (i, p) => {
    const id = ids.data[p[0]];
    if (!Number.isInteger(id) || id < 0 || id >= rows)
      fail("input", ctx.where, `gather: index ${id} is outside the table's ${rows} rows`);
    const src = { offset: table.offset + id * table.strides[0], strides: restStrides };
    walk(rest, [src], (j, s) => (out.data[out.offset + i * row + j] = table.data[s[0]]));
  });
}
