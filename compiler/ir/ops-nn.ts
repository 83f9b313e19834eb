/** Neural-network ops: positional encoding, softmax and masks, layer norm, reductions. */
import { isFloat } from "./dtype.ts";
import { around, mapBroadcast, ndarray } from "./ndarray.ts";
import type { OpDecl } from "./ops.ts";
import { broadcastShapes, dimEq, formatShape, formatType, type TensorType } from "./shape.ts";

type NNOp =
  | "sinusoidal"
  | "softmax"
  | "causal_mask"
  | "masked_fill"
  | "layer_norm"
  | "reduce_sum"
  | "reduce_mean";

function floatAxis(x: TensorType, axis: number): TensorType | string {
  if (!isFloat(x.dtype)) return `needs a float dtype, got ${formatType(x)}`;
  if (!Number.isInteger(axis) || axis < 0 || axis >= x.shape.length)
    return `axis ${axis} out of range for ${formatShape(x.shape)}`;
  return x;
}

function reduce(mean: boolean): OpDecl<"reduce_sum" | "reduce_mean"> {
  return {
    arity: 1,
    attrs: { axis: "int" },
    type: (a, [x]) => {
      const t = floatAxis(x, a.axis);
      return typeof t === "string"
        ? t
        : { dtype: x.dtype, shape: x.shape.map((d, i) => (i === a.axis ? 1 : d)) };
    },
    eval: (a, [x], out) => {
      const [outer, len, inner] = around(x.shape, a.axis);
      const res = ndarray(out);
      for (let o = 0; o < outer; o++)
        for (let i = 0; i < inner; i++) {
          let s = 0;
          for (let k = 0; k < len; k++) s += x.data[(o * len + k) * inner + i];
          res.data[o * inner + i] = mean ? s / len : s;
        }
      return res;
    },
  };
}

export const NN: { readonly [O in NNOp]: OpDecl<O> } = {
  sinusoidal: {
    arity: 1,
    attrs: { dim: "int" },
    type: (a, [pos]) => {
      if (pos.dtype !== "i32" || pos.shape.length !== 1)
        return `positions must be i32[T], got ${formatType(pos)}`;
      if (!Number.isInteger(a.dim) || a.dim <= 0 || a.dim % 2 !== 0)
        return `dim ${a.dim} must be a positive even number`;
      return { dtype: "f32", shape: [pos.shape[0], a.dim] };
    },
    // PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d))
    eval: (a, [pos], out) => {
      const res = ndarray(out);
      for (let t = 0; t < out[0]; t++)
        for (let i = 0; i < a.dim; i += 2) {
          const angle = pos.data[t] * Math.exp((-i * Math.log(10000)) / a.dim);
          res.data[t * a.dim + i] = Math.sin(angle);
          res.data[t * a.dim + i + 1] = Math.cos(angle);
        }
      return res;
    },
  },
  softmax: {
    arity: 1,
    attrs: { axis: "int" },
    type: (a, [x]) => floatAxis(x, a.axis),
    // Subtract the row max; a row that is all −∞ (fully masked) gives zeros, never NaN.
    eval: (a, [x], out) => {
      const [outer, len, inner] = around(x.shape, a.axis);
      const res = ndarray(out);
      for (let o = 0; o < outer; o++)
        for (let i = 0; i < inner; i++) {
          const at = (k: number) => (o * len + k) * inner + i;
          let m = -Infinity;
          for (let k = 0; k < len; k++) m = Math.max(m, x.data[at(k)]);
          if (m === -Infinity) continue;
          let s = 0;
          for (let k = 0; k < len; k++) s += Math.exp(x.data[at(k)] - m);
          for (let k = 0; k < len; k++) res.data[at(k)] = Math.exp(x.data[at(k)] - m) / s;
        }
      return res;
    },
  },
  causal_mask: {
    arity: 1,
    attrs: {},
    type: (_a, [x]) => {
      if (!isFloat(x.dtype) || x.shape.length < 2)
        return `needs a float tensor [..,Tq,Tk], got ${formatType(x)}`;
      return x;
    },
    eval: (_a, [x], out) => {
      const r = out.length;
      const [tq, tk] = [out[r - 2], out[r - 1]];
      const res = ndarray(out, x.data);
      for (let b = 0; b < res.data.length; b += tq * tk)
        for (let i = 0; i < tq; i++)
          for (let j = Math.max(0, i + (tk - tq) + 1); j < tk; j++)
            res.data[b + i * tk + j] = -Infinity;
      return res;
    },
  },
  masked_fill: {
    arity: 2,
    attrs: { value: "float" },
    type: (_a, [x, mask]) => {
      if (!isFloat(x.dtype)) return `needs a float tensor, got ${formatType(x)}`;
      const s = broadcastShapes(x.shape, mask.shape);
      if (typeof s === "string") return s;
      if (s.length !== x.shape.length || !s.every((d, i) => dimEq(d, x.shape[i])))
        return `mask ${formatShape(mask.shape)} must broadcast to ${formatShape(x.shape)}`;
      return x;
    },
    eval: (a, ins, out) => mapBroadcast(out, ins, (x, m) => (m !== 0 ? a.value : x)),
  },
  layer_norm: {
    arity: 3,
    attrs: { eps: "float" },
    type: (a, [x, g, b]) => {
      if (!isFloat(x.dtype) || x.shape.length < 1)
        return `needs a float tensor, got ${formatType(x)}`;
      const c = x.shape[x.shape.length - 1];
      for (const [what, t] of [
        ["weight", g],
        ["bias", b],
      ] as const)
        if (t.dtype !== x.dtype || t.shape.length !== 1 || !dimEq(t.shape[0], c))
          return `${what} ${formatType(t)} must be ${x.dtype}[${c}] to normalize ${formatShape(x.shape)}`;
      if (!(a.eps > 0)) return `eps ${a.eps} must be positive`;
      return x;
    },
    eval: (a, [x, g, b], out) => {
      const c = out[out.length - 1];
      const res = ndarray(out);
      for (let o = 0; o < res.data.length; o += c) {
        let mean = 0;
        for (let k = 0; k < c; k++) mean += x.data[o + k];
        mean /= c;
        let v = 0;
        for (let k = 0; k < c; k++) v += (x.data[o + k] - mean) ** 2;
        const inv = 1 / Math.sqrt(v / c + a.eps);
        for (let k = 0; k < c; k++)
          res.data[o + k] = (x.data[o + k] - mean) * inv * g.data[k] + b.data[k];
      }
      return res;
    },
  },
  reduce_sum: reduce(false),
  reduce_mean: reduce(true),
};
