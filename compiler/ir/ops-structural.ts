/** Sources and data movement: input, param, const, range, matmul, transpose, reshape, slice, gather. */
import { isFloat } from "./dtype.ts";
import { ndarray, strides, type NDArray } from "./ndarray.ts";
import type { OpDecl } from "./ops.ts";
import {
  dimEq,
  evalDim,
  formatShape,
  formatType,
  isDim,
  numel,
  type Dim,
  type Shape,
  type TensorType,
} from "./shape.ts";

type StructuralOp =
  | "input"
  | "param"
  | "const"
  | "range"
  | "matmul"
  | "transpose"
  | "reshape"
  | "slice"
  | "gather"
  | "concat";

function declaredType(declared: TensorType | undefined): TensorType | string {
  return declared ?? "a source op needs a declared type";
}

function checkAxis(axis: number, rank: number): string | undefined {
  if (!Number.isInteger(axis) || axis < 0 || axis >= rank)
    return `axis ${axis} out of range for rank ${rank}`;
  return undefined;
}

/** Symbolic shapes are equal in size when their numeric parts multiply to the same number and
 *  they mention the same symbols. */
function sameSize(a: Shape, b: Shape): boolean {
  const split = (s: Shape): [number, string] => {
    let n = 1;
    const syms: string[] = [];
    for (const d of s) typeof d === "number" ? (n *= d) : syms.push(d);
    return [n, syms.sort().join("*")];
  };
  const [na, sa] = split(a);
  const [nb, sb] = split(b);
  return na === nb && sa === sb;
}

export function matmulEval(
  transposeB: boolean,
  a: NDArray,
  b: NDArray,
  out: readonly number[],
): NDArray {
  const r = out.length;
  const [M, N] = [out[r - 2], out[r - 1]];
  const K = a.shape[a.shape.length - 1];
  const res = ndarray(out);
  const batch = numel(out.slice(0, r - 2));
  const batchShape = out.slice(0, r - 2);
  const bst = (s: readonly number[]): number[] => {
    const st = strides(s.slice(0, s.length - 2)).map((x) => x * s[s.length - 1] * s[s.length - 2]);
    const off = batchShape.length - (s.length - 2);
    return batchShape.map((_, i) => (i < off || s[i - off] === 1 ? 0 : st[i - off]));
  };
  const [sa, sb] = [bst(a.shape), bst(b.shape)];
  const bidx = new Array<number>(batchShape.length).fill(0);
  for (let t = 0; t < batch; t++) {
    let oa = 0;
    let ob = 0;
    for (let i = 0; i < bidx.length; i++) {
      oa += bidx[i] * sa[i];
      ob += bidx[i] * sb[i];
    }
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++)
          acc += a.data[oa + i * K + k] * b.data[ob + (transposeB ? j * K + k : k * N + j)];
        res.data[t * M * N + i * N + j] = acc;
      }
    for (let i = bidx.length - 1; i >= 0 && ++bidx[i] >= batchShape[i]; i--) bidx[i] = 0;
  }
  return res;
}

/** The sum of dims along a concat axis: a number when all are, else a `+`-sum. */
function sumDims(ds: readonly Dim[]): Dim {
  const n = ds.filter((d): d is number => typeof d === "number").reduce((a, b) => a + b, 0);
  const syms = ds.filter((d): d is string => typeof d === "string");
  if (syms.length === 0) return n;
  return [...syms, ...(n ? [String(n)] : [])].join("+");
}

export const STRUCTURAL: { readonly [O in StructuralOp]: OpDecl<O> } = {
  concat: {
    arity: [1, Infinity],
    attrs: { axis: "int" },
    type: (a, ins) => {
      const x = ins[0];
      const bad = checkAxis(a.axis, x.shape.length);
      if (bad) return bad;
      for (const t of ins)
        if (
          t.dtype !== x.dtype ||
          t.shape.length !== x.shape.length ||
          t.shape.some((d, i) => i !== a.axis && !dimEq(d, x.shape[i]))
        )
          return `cannot concatenate ${ins.map((t) => formatType(t)).join(", ")} along axis ${a.axis}`;
      return {
        dtype: x.dtype,
        shape: x.shape.map((d, i) => (i === a.axis ? sumDims(ins.map((t) => t.shape[a.axis])) : d)),
      };
    },
    eval: (a, ins, out) => {
      const res = ndarray(out);
      const inner = numel(out.slice(a.axis + 1));
      const outer = numel(out.slice(0, a.axis));
      let at = 0;
      for (const x of ins) {
        const len = x.shape[a.axis] * inner;
        for (let o = 0; o < outer; o++)
          res.data.set(x.data.subarray(o * len, (o + 1) * len), o * out[a.axis] * inner + at);
        at += len;
      }
      return res;
    },
  },
  input: {
    arity: 0,
    attrs: { name: "string" },
    type: (_a, _i, d) => declaredType(d),
    eval: (a, _i, _o, ctx) => ctx.input(a.name),
  },
  param: {
    arity: 0,
    attrs: { name: "string" },
    type: (_a, _i, d) => declaredType(d),
    eval: (a, _i, _o, ctx) => ctx.param(a.name),
  },
  const: {
    arity: 0,
    attrs: { value: "float" },
    type: (_a, _i, d) => declaredType(d),
    eval: (a, _i, out) => {
      const r = ndarray(out);
      r.data.fill(a.value);
      return r;
    },
  },
  range: {
    arity: 0,
    attrs: { start: "dim", size: "dim" },
    type: (a) => {
      if (!isDim(a.start) || !isDim(a.size)) return `start and size must be dims`;
      return { dtype: "i32", shape: [a.size] };
    },
    eval: (a, _i, out, ctx) => {
      const start = evalDim(a.start, ctx.bindings);
      if (start === undefined) throw new RangeError(`${ctx.node}: unbound dim in ${a.start}`);
      return ndarray(
        out,
        Array.from({ length: out[0] }, (_, i) => start + i),
      );
    },
  },
  matmul: {
    arity: 2,
    attrs: { transposeB: "bool" },
    type: (a, [x, y]) => {
      const show = `${formatShape(x.shape)} × ${formatShape(y.shape)}${a.transposeB ? "ᵀ" : ""}`;
      if (x.dtype !== y.dtype) return `${show}: dtypes differ (${x.dtype}, ${y.dtype})`;
      if (!isFloat(x.dtype)) return `${show}: needs a float dtype, got ${x.dtype}`;
      if (x.shape.length < 2 || y.shape.length < 2) return `${show}: operands need rank ≥ 2`;
      const [rx, ry] = [x.shape.length, y.shape.length];
      const K = x.shape[rx - 1];
      const [Ky, N] = a.transposeB
        ? [y.shape[ry - 1], y.shape[ry - 2]]
        : [y.shape[ry - 2], y.shape[ry - 1]];
      if (!dimEq(K, Ky)) return `${show}: inner dims differ (${K} vs ${Ky})`;
      const bx = x.shape.slice(0, rx - 2);
      const by = y.shape.slice(0, ry - 2);
      const n = Math.max(bx.length, by.length);
      const batch: Dim[] = [];
      for (let i = 0; i < n; i++) {
        const p = bx[bx.length - n + i] ?? 1;
        const q = by[by.length - n + i] ?? 1;
        if (dimEq(p, q) || q === 1) batch.push(p);
        else if (p === 1) batch.push(q);
        else return `${show}: batch dims differ`;
      }
      return { dtype: x.dtype, shape: [...batch, x.shape[rx - 2], N] };
    },
    eval: (a, [x, y], out) => matmulEval(a.transposeB, x, y, out),
  },
  transpose: {
    arity: 1,
    attrs: { perm: "ints" },
    type: (a, [x]) => {
      const r = x.shape.length;
      const ok = a.perm.length === r && [...a.perm].sort((p, q) => p - q).every((p, i) => p === i);
      if (!ok)
        return `perm [${a.perm}] is not a permutation of the ${r} axes of ${formatShape(x.shape)}`;
      return { dtype: x.dtype, shape: a.perm.map((p) => x.shape[p]) };
    },
    eval: (a, [x], out) => {
      const res = ndarray(out);
      const sx = strides(x.shape);
      const so = strides(out);
      for (let i = 0; i < res.data.length; i++) {
        let rem = i;
        let off = 0;
        for (let ax = 0; ax < out.length; ax++) {
          const c = Math.floor(rem / so[ax]);
          rem -= c * so[ax];
          off += c * sx[a.perm[ax]];
        }
        res.data[i] = x.data[off];
      }
      return res;
    },
  },
  reshape: {
    arity: 1,
    attrs: { shape: "dims" },
    type: (a, [x]) => {
      if (!a.shape.every(isDim)) return `bad target shape ${formatShape(a.shape)}`;
      if (!sameSize(x.shape, a.shape))
        return `cannot reshape ${formatShape(x.shape)} to ${formatShape(a.shape)}: sizes differ`;
      return { dtype: x.dtype, shape: a.shape };
    },
    eval: (_a, [x], out) => ndarray(out, x.data),
  },
  slice: {
    arity: 1,
    attrs: { axis: "int", start: "int", size: "int" },
    // A negative start counts from the end of the axis (start −1, size 1: the last element), so a
    // slice can end at a symbolic length; the slice may not run past the end either way.
    type: (a, [x]) => {
      const bad = checkAxis(a.axis, x.shape.length);
      if (bad) return bad;
      const d = x.shape[a.axis];
      const end = a.start + a.size;
      const outside =
        a.size < 0 ||
        (a.start >= 0
          ? typeof d === "number" && end > d
          : end > 0 || (typeof d === "number" && -a.start > d));
      if (outside)
        return `[${a.start}, ${end}) is outside axis ${a.axis} of ${formatShape(x.shape)}`;
      return { dtype: x.dtype, shape: x.shape.map((s, i) => (i === a.axis ? a.size : s)) };
    },
    eval: (a, [x], out, ctx) => {
      const len = x.shape[a.axis];
      const start = a.start < 0 ? len + a.start : a.start;
      if (start < 0 || start + a.size > len)
        throw new RangeError(
          `${ctx.node}: slice [${a.start}, ${a.start + a.size}) past axis length ${len}`,
        );
      const outer = numel(x.shape.slice(0, a.axis));
      const inner = numel(x.shape.slice(a.axis + 1));
      const res = ndarray(out);
      for (let o = 0; o < outer; o++)
        res.data.set(
          x.data.subarray((o * len + start) * inner, (o * len + start + a.size) * inner),
          o * a.size * inner,
        );
      return res;
    },
  },
  gather: {
    arity: 2,
    attrs: {},
    type: (_a, [table, ids]) => {
      if (ids.dtype !== "i32") return `ids must be i32, got ${formatType(ids)}`;
      if (table.shape.length < 1) return `table must have rank ≥ 1, got ${formatType(table)}`;
      return { dtype: table.dtype, shape: [...ids.shape, ...table.shape.slice(1)] };
    },
    eval: (_a, [table, ids], out, ctx) => {
      const rows = table.shape[0];
      const row = numel(table.shape.slice(1));
      const res = ndarray(out);
      ids.data.forEach((id, i) => {
        if (!Number.isInteger(id) || id < 0 || id >= rows)
          throw new GatherIndexError(ctx.node, id, rows);
        res.data.set(table.data.subarray(id * row, (id + 1) * row), i * row);
      });
      return res;
    },
  },
};

/** An index outside the table; the interpreter turns it into a KilnError naming the node. */
export class GatherIndexError extends Error {
  constructor(
    readonly node: string,
    readonly index: number,
    readonly rows: number,
  ) {
    super(`index ${index} outside [0, ${rows})`);
  }
}
