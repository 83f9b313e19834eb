/** Elementwise ops: numpy broadcasting, both operands of one float dtype. */
import { isFloat } from "./dtype.ts";
import { erf } from "./erf.ts";
import { mapBroadcast } from "./ndarray.ts";
import type { OpDecl } from "./ops.ts";
import { broadcastShapes, formatType, type TensorType } from "./shape.ts";

export type BinaryOp = "add" | "sub" | "mul" | "div";
export type UnaryOp = "neg" | "exp" | "sqrt" | "rsqrt" | "tanh" | "relu" | "gelu" | "gelu_tanh";
export type ElementwiseOp = BinaryOp | UnaryOp;

/** Scalar semantics, shared with the expression IR that fused kernels are written in. */
export const BINARY_FN: { readonly [O in BinaryOp]: (a: number, b: number) => number } = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
};

const GELU_TANH_C = Math.sqrt(2 / Math.PI);

export const UNARY_FN: { readonly [O in UnaryOp]: (x: number) => number } = {
  neg: (x) => -x,
  exp: Math.exp,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  tanh: Math.tanh,
  relu: (x) => (x > 0 ? x : 0),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(GELU_TANH_C * (x + 0.044715 * x * x * x))),
};

function binary(op: BinaryOp): OpDecl<BinaryOp> {
  const f = BINARY_FN[op];
  return {
    arity: 2,
    attrs: {},
    type: (_a, [x, y]) => {
      if (x.dtype !== y.dtype) return `dtypes differ: ${formatType(x)} and ${formatType(y)}`;
      if (!isFloat(x.dtype)) return `needs a float dtype, got ${formatType(x)}`;
      const shape = broadcastShapes(x.shape, y.shape);
      return typeof shape === "string" ? shape : { dtype: x.dtype, shape };
    },
    eval: (_a, ins, out) => mapBroadcast(out, ins, f),
  };
}

function unary(op: UnaryOp): OpDecl<UnaryOp> {
  const f = UNARY_FN[op];
  return {
    arity: 1,
    attrs: {},
    type: (_a, [x]): TensorType | string =>
      isFloat(x.dtype) ? x : `needs a float dtype, got ${formatType(x)}`,
    eval: (_a, ins, out) => mapBroadcast(out, ins, f),
  };
}

export const ELEMENTWISE: { readonly [O in ElementwiseOp]: OpDecl<O> } = {
  add: binary("add"),
  sub: binary("sub"),
  mul: binary("mul"),
  div: binary("div"),
  neg: unary("neg"),
  exp: unary("exp"),
  sqrt: unary("sqrt"),
  rsqrt: unary("rsqrt"),
  tanh: unary("tanh"),
  relu: unary("relu"),
  gelu: unary("gelu"),
  gelu_tanh: unary("gelu_tanh"),
};
