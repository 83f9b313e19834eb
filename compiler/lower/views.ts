/** View arithmetic: slice, transpose, reshape and concat as offsets and strides, and the
 *  broadcast of an operand to its consumer's shape.
 *
 *  Rule: offsets and strides are polynomials in the dims (sym.ts), so every stride a symbolic
 *  shape produces (T·8, T·T, …) is expressible; what is not is a reshape that merges axes whose
 *  strides do not chain (stride[i] ≠ stride[i+1]·size[i+1]), such as merging heads back after a
 *  transpose, and a concat whose parts are not adjacent pieces of one buffer. Those return
 *  undefined, and the lowering materializes them with a copy (or concat) kernel of family map. */
import type { Dim, Shape } from "../ir/shape.ts";
import type { View } from "./program.ts";
import {
  ONE,
  ZERO,
  symAdd,
  symConst,
  symDiv,
  symEq,
  symMul,
  symOfDim,
  symScale,
  type SymInt,
} from "./sym.ts";

/** Row-major strides of a shape. */
export function contiguousStrides(shape: Shape): SymInt[] {
  const out: SymInt[] = new Array<SymInt>(shape.length);
  let acc: SymInt = ONE;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = acc;
    acc = symMul(acc, symOfDim(shape[i]));
  }
  return out;
}

/** The whole of a buffer of that shape. */
export function wholeView(buffer: number, shape: Shape): View {
  return { buffer, offset: ZERO, shape, strides: contiguousStrides(shape) };
}

const isOne = (d: Dim): boolean => d === 1;

/** Row-major over its shape (strides of size-1 axes do not matter). */
export function isContiguous(v: View): boolean {
  const want = contiguousStrides(v.shape);
  return v.shape.every((d, i) => isOne(d) || symEq(v.strides[i], want[i]));
}

/** The view is its buffer, whole, in order. */
export function isWhole(v: View, bufferShape: Shape): boolean {
  return (
    v.offset.length === 0 &&
    v.shape.length === bufferShape.length &&
    v.shape.every((d, i) => d === bufferShape[i]) &&
    isContiguous(v)
  );
}

/** A negative start counts from the end of the axis: the view starts at `len + start`. */
export function sliceView(v: View, axis: number, start: number, size: number): View {
  const from = start < 0 ? symAdd(symOfDim(v.shape[axis]), symConst(start)) : symConst(start);
  return {
    buffer: v.buffer,
    offset: symAdd(v.offset, symMul(v.strides[axis], from)),
    shape: v.shape.map((d, i) => (i === axis ? size : d)),
    strides: v.strides,
  };
}

export function transposeView(v: View, perm: readonly number[]): View {
  return {
    buffer: v.buffer,
    offset: v.offset,
    shape: perm.map((p) => v.shape[p]),
    strides: perm.map((p) => v.strides[p]),
  };
}

/** A reshape without moving data: the axes are grouped into runs of equal size on both sides
 *  (sizes compared as polynomials, a run growing on the side whose size divides the other's); a
 *  run of old axes must chain (stride[i] = stride[i+1]·size[i+1]) to be re-split. */
export function reshapeView(v: View, shape: Shape): View | undefined {
  if (isContiguous(v)) return { ...v, shape, strides: contiguousStrides(shape) };
  const old = v.shape.map((d, i) => ({ size: symOfDim(d), stride: v.strides[i] }));
  const olds = old.filter((_, i) => !isOne(v.shape[i]));
  const news = shape.map((d, i) => ({ i, size: symOfDim(d) })).filter((x) => !isOne(shape[x.i]));
  const strides: SymInt[] = shape.map(() => ZERO);
  let [i, j] = [0, 0];
  while (i < olds.length && j < news.length) {
    const [i0, j0] = [i, j];
    let [po, pn] = [olds[i].size, news[j].size];
    while (!symEq(po, pn)) {
      if (symDiv(po, pn) && j + 1 < news.length) pn = symMul(pn, news[++j].size);
      else if (symDiv(pn, po) && i + 1 < olds.length) po = symMul(po, olds[++i].size);
      else return undefined;
    }
    for (let k = i0; k < i; k++)
      if (!symEq(olds[k].stride, symMul(olds[k + 1].stride, olds[k + 1].size))) return undefined;
    let s = olds[i].stride;
    for (let k = j; k >= j0; k--) {
      strides[news[k].i] = s;
      s = symMul(s, news[k].size);
    }
    i++;
    j++;
  }
  if (i !== olds.length || j !== news.length) return undefined;
  return { buffer: v.buffer, offset: v.offset, shape, strides };
}

/** Concat as a view: the parts are adjacent pieces of one buffer along the axis. */
export function concatView(parts: readonly View[], axis: number, shape: Shape): View | undefined {
  const [first] = parts;
  let next = first.offset;
  for (const p of parts) {
    if (p.buffer !== first.buffer || p.shape.length !== first.shape.length) return undefined;
    if (!p.strides.every((s, i) => symEq(s, first.strides[i]))) return undefined;
    if (!p.shape.every((d, i) => i === axis || d === first.shape[i])) return undefined;
    if (!symEq(p.offset, next)) return undefined;
    next = symAdd(p.offset, symMul(p.strides[axis], symOfDim(p.shape[axis])));
  }
  return { buffer: first.buffer, offset: first.offset, shape, strides: first.strides };
}

/** The view read as `shape` by numpy broadcasting: new leading axes and size-1 axes get
 *  stride 0. */
export function broadcastView(v: View, shape: Shape): View {
  const off = shape.length - v.shape.length;
  return {
    buffer: v.buffer,
    offset: v.offset,
    shape,
    strides: shape.map((d, i) =>
      i < off || (isOne(v.shape[i - off]) && !isOne(d)) ? ZERO : v.strides[i - off],
    ),
  };
}
