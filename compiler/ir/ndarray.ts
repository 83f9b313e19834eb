/** Dense float64 arrays for the reference interpreter: the slow, exact definition of every op.
 *  i32 values are held as exact integers in the same Float64Array. */
import { numel } from "./shape.ts";

export interface NDArray {
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

export function ndarray(shape: readonly number[], data?: ArrayLike<number>): NDArray {
  const n = numel(shape);
  const out = new Float64Array(n);
  if (data !== undefined) {
    if (data.length !== n) throw new Error(`ndarray: ${data.length} values for shape [${shape}]`);
    out.set(data);
  }
  return { shape: [...shape], data: out };
}

export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Strides of `shape` read as if broadcast to `outShape` (0 on broadcast axes). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const s = strides(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : s[i - off]));
}

/** Calls f(flatIndexOut, offsetsIn...) over every element of outShape. */
export function forEachIndex(
  outShape: readonly number[],
  inStrides: readonly (readonly number[])[],
  f: (i: number, offs: readonly number[]) => void,
): void {
  const n = numel(outShape);
  const rank = outShape.length;
  const idx = new Array<number>(rank).fill(0);
  const offs = inStrides.map(() => 0);
  for (let i = 0; i < n; i++) {
    f(i, offs);
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]++;
      for (let k = 0; k < offs.length; k++) offs[k] += inStrides[k][ax];
      if (idx[ax] < outShape[ax]) break;
      for (let k = 0; k < offs.length; k++) offs[k] -= inStrides[k][ax] * outShape[ax];
      idx[ax] = 0;
    }
  }
}

/** Elementwise map over broadcast inputs. */
export function mapBroadcast(
  outShape: readonly number[],
  ins: readonly NDArray[],
  f: (...xs: number[]) => number,
): NDArray {
  const out = ndarray(outShape);
  const st = ins.map((a) => broadcastStrides(a.shape, outShape));
  const xs = new Array<number>(ins.length);
  forEachIndex(outShape, st, (i, offs) => {
    for (let k = 0; k < ins.length; k++) xs[k] = ins[k].data[offs[k]];
    out.data[i] = f(...xs);
  });
  return out;
}

/** Splits a shape around `axis` into (outer, len, inner) extents. */
export function around(shape: readonly number[], axis: number): [number, number, number] {
  return [numel(shape.slice(0, axis)), shape[axis], numel(shape.slice(axis + 1))];
}
