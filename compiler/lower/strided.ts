/** Strided float64 arrays: a view with its dims bound, as the Program interpreter's kernels read
 *  and write them. Element (i0, i1, …) is data[offset + Σ ik·strides[k]]. */

export interface Strided {
  readonly data: Float64Array;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
}

export function rowMajorStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function count(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Calls f(i, offs) for every index of `shape` in row-major order: i counts from 0, offs[k] is
 *  the element's position in views[k] (each view indexed by the same shape, or by its own
 *  strides over that shape when `strides` is given per view). */
export function walk(
  shape: readonly number[],
  views: readonly { readonly offset: number; readonly strides: readonly number[] }[],
  f: (i: number, offs: readonly number[]) => void,
): void {
  const n = count(shape);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  const offs = views.map((v) => v.offset);
  for (let i = 0; i < n; i++) {
    f(i, offs);
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]++;
      for (let k = 0; k < offs.length; k++) offs[k] += views[k].strides[ax];
      if (idx[ax] < shape[ax]) break;
      for (let k = 0; k < offs.length; k++) offs[k] -= views[k].strides[ax] * shape[ax];
      idx[ax] = 0;
    }
  }
}

/** The view without one axis (iterating rows: every index but the row's own axis). */
export function dropAxis<
  T extends { readonly offset: number; readonly strides: readonly number[] },
>(v: T, axis: number): { offset: number; strides: number[] } {
  return { offset: v.offset, strides: v.strides.filter((_, i) => i !== axis) };
}
