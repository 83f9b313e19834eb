/** The row_reduction family in the Program interpreter: one row at a time (every index of the
 *  other axes), reading the row through its stride, as a generated kernel's workgroup would.
 *  softmax: scale, hide masked elements (−∞), subtract the row max; a row with nothing visible
 *  gives zeros, never NaN, and whatever a hidden element held (NaN, 1e10) never reaches the sum.
 *  layer_norm: the prologue expression per element, then mean and variance in two passes. */
import { evalExpr, type Expr } from "../ir/expr.ts";
import { dropAxis, walk, type Strided } from "./strided.ts";

export interface SoftmaxSpec {
  readonly axis: number;
  readonly scale: number;
  readonly causal: boolean;
}

export function softmax(s: SoftmaxSpec, x: Strided, mask: Strided | undefined, out: Strided): void {
  const { axis } = s;
  const rank = out.shape.length;
  const len = out.shape[axis];
  const tq = rank >= 2 ? out.shape[rank - 2] : 1;
  const outer = out.shape.filter((_, i) => i !== axis);
  const views = [out, x, ...(mask ? [mask] : [])].map((v) => dropAxis(v, axis));
  const [so, sx, sm] = [out, x, mask].map((v) => v?.strides[axis] ?? 0);
  const row = new Float64Array(len);
  walk(outer, views, (r, offs) => {
    const [o, a, m] = [offs[0], offs[1], offs[2]];
    const q = r % tq; // the query index, when the row is the last axis of [.., Tq, Tk]
    let max = -Infinity;
    for (let k = 0; k < len; k++) {
      const hidden = (s.causal && k > q + (len - tq)) || (mask && mask.data[m + k * sm] !== 0);
      row[k] = hidden ? -Infinity : x.data[a + k * sx] * s.scale;
      max = Math.max(max, row[k]);
    }
    if (max === -Infinity) {
      for (let k = 0; k < len; k++) out.data[o + k * so] = 0;
      return;
    }
    let sum = 0;
    for (let k = 0; k < len; k++) sum += Math.exp(row[k] - max);
    for (let k = 0; k < len; k++) out.data[o + k * so] = Math.exp(row[k] - max) / sum;
  });
}

/** (γ, β, xs…): layer_norm(expr(xs)) over the last axis. */
export function layerNorm(eps: number, expr: Expr, ins: readonly Strided[], out: Strided): void {
  const [g, b, ...xs] = ins;
  const rank = out.shape.length;
  const c = out.shape[rank - 1];
  const outer = out.shape.slice(0, rank - 1);
  const views = [out, ...xs].map((v) => dropAxis(v, rank - 1));
  const steps = [out, ...xs].map((v) => v.strides[rank - 1]);
  const row = new Float64Array(c);
  const args = new Array<number>(xs.length);
  walk(outer, views, (_r, offs) => {
    let mean = 0;
    for (let k = 0; k < c; k++) {
      for (let i = 0; i < xs.length; i++) args[i] = xs[i].data[offs[i + 1] + k * steps[i + 1]];
      row[k] = evalExpr(expr, args);
      mean += row[k];
    }
    mean /= c;
    let v = 0;
    for (let k = 0; k < c; k++) v += (row[k] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / c + eps);
    for (let k = 0; k < c; k++)
      out.data[offs[0] + k * steps[0]] =
        (row[k] - mean) * inv * g.data[g.offset + k * g.strides[0]] +
        b.data[b.offset + k * b.strides[0]];
  });
}

/** Sum (or mean) along the axis, which the result keeps with size 1. */
export function reduce(axis: number, mean: boolean, x: Strided, out: Strided): void {
  const len = x.shape[axis];
  const step = x.strides[axis];
  walk(out.shape, [out, x], (_i, o) => {
    let s = 0;
    for (let k = 0; k < len; k++) s += x.data[o[1] + k * step];
    out.data[o[0]] = mean ? s / len : s;
  });
}
