/** What kernel computes a node: its family's body and its input views, in the body's order.
 *  A plain op becomes the body of the fused op that generalizes it (program.ts); operands that
 *  combine elementwise with the result are pre-broadcast to the result's shape. */
import { assertNever } from "../errors.ts";
import { ACC, binary, constant, input, unary, type Expr } from "../ir/expr.ts";
import type { NodeData } from "../ir/graph.ts";
import type { Shape } from "../ir/shape.ts";
import type { KernelBody, View } from "./program.ts";
import { broadcastView, sliceView, transposeView } from "./views.ts";

export interface Lowered {
  readonly body: KernelBody;
  readonly inputs: readonly View[];
}

/** a [..,M,K] and b [..,K,N] (or [..,N,K]) with their batch axes broadcast to the result's. */
function matmulOperands(a: View, b: View, out: Shape): View[] {
  const batch = out.slice(0, out.length - 2);
  return [a, b].map((v) => broadcastView(v, [...batch, ...v.shape.slice(v.shape.length - 2)]));
}

export function kernelFor(n: NodeData, ins: readonly View[]): Lowered {
  const out = n.type.shape;
  const bc = (v: View): View => broadcastView(v, out);
  const expr = (e: Expr): Lowered => ({
    body: { kind: "expr", expr: e },
    inputs: ins.map(bc),
  });
  switch (n.op) {
    case "input":
    case "param":
      throw new Error(`${n.op} is a buffer, not a kernel`);
    case "const":
      return { body: { kind: "expr", expr: constant(n.attrs.value) }, inputs: [] };
    case "range":
      return { body: { kind: "range", start: n.attrs.start }, inputs: [] };
    case "add":
    case "sub":
    case "mul":
    case "div":
      return expr(binary(n.op, input(0), input(1)));
    case "neg":
    case "exp":
    case "sqrt":
    case "rsqrt":
    case "tanh":
    case "relu":
    case "gelu":
    case "gelu_tanh":
      return expr(unary(n.op, input(0)));
    case "map":
      return expr(n.attrs.expr);
    // Views that lower.ts could not keep as views are copies; only a reshape can fail.
    case "reshape":
      return { body: { kind: "copy" }, inputs: ins };
    case "transpose":
      return {
        body: { kind: "expr", expr: input(0) },
        inputs: [transposeView(ins[0], n.attrs.perm)],
      };
    case "slice":
      return {
        body: { kind: "expr", expr: input(0) },
        inputs: [sliceView(ins[0], n.attrs.axis, n.attrs.start, n.attrs.size)],
      };
    case "concat":
      return { body: { kind: "concat", axis: n.attrs.axis }, inputs: ins };
    case "masked_fill":
      return { body: { kind: "masked_fill", value: n.attrs.value }, inputs: ins.map(bc) };
    case "causal_mask":
      return { body: { kind: "causal_mask" }, inputs: ins };
    case "sinusoidal":
      return { body: { kind: "sinusoidal", dim: n.attrs.dim }, inputs: ins };
    case "softmax":
      return {
        body: { kind: "softmax", axis: n.attrs.axis, scale: 1, causal: false, masked: false },
        inputs: ins,
      };
    case "scale_softmax": {
      const { scale, causal } = n.attrs;
      return {
        body: { kind: "softmax", axis: out.length - 1, scale, causal, masked: ins.length > 1 },
        inputs: ins.map(bc),
      };
    }
    case "layer_norm":
      return {
        body: { kind: "layer_norm", eps: n.attrs.eps, expr: input(0) },
        inputs: [ins[1], ins[2], bc(ins[0])],
      };
    case "layer_norm_map":
      return {
        body: { kind: "layer_norm", eps: n.attrs.eps, expr: n.attrs.expr },
        inputs: [ins[0], ins[1], ...ins.slice(2).map(bc)],
      };
    case "reduce_sum":
    case "reduce_mean":
      return {
        body: { kind: "reduce", axis: n.attrs.axis, mean: n.op === "reduce_mean" },
        inputs: ins,
      };
    case "matmul":
      return {
        body: { kind: "matmul", transposeB: n.attrs.transposeB, expr: ACC },
        inputs: matmulOperands(ins[0], ins[1], out),
      };
    case "matmul_epilogue":
      return {
        body: { kind: "matmul", transposeB: n.attrs.transposeB, expr: n.attrs.expr },
        inputs: [...matmulOperands(ins[0], ins[1], out), ...ins.slice(2).map(bc)],
      };
    case "attention": {
      const { heads, scale, causal } = n.attrs;
      return {
        body: { kind: "attention", heads, scale, causal, masked: ins.length > 3 },
        inputs: ins,
      };
    }
    case "gather":
      return { body: { kind: "gather" }, inputs: ins };
    default:
      return assertNever(n, "op");
  }
}
