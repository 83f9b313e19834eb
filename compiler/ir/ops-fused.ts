/** Fused ops: made by the fusion passes, never by a model. Each one's reference semantics is
 *  defined by composing the ops it replaces, so "optimized ≡ unoptimized" holds by definition in
 *  the interpreter and the tests check the kernels that implement them. */
import { isFloat } from "./dtype.ts";
import { evalExpr, exprArity, usesAcc, type Expr } from "./expr.ts";
import { mapBroadcast, ndarray, type NDArray } from "./ndarray.ts";
import { NN } from "./ops-nn.ts";
import { STRUCTURAL, matmulEval } from "./ops-structural.ts";
import type { EvalContext, OpDecl } from "./ops.ts";
import {
  broadcastShapes,
  dimEq,
  formatShape,
  formatType,
  shapeEq,
  type Shape,
  type TensorType,
} from "./shape.ts";

type FusedOp = "map" | "matmul_epilogue" | "layer_norm_map" | "scale_softmax" | "attention";

function broadcastAll(ts: readonly TensorType[]): Shape | string {
  let s: Shape = [];
  for (const t of ts) {
    const b = broadcastShapes(s, t.shape);
    if (typeof b === "string") return b;
    s = b;
  }
  return s;
}

function checkExpr(e: Expr, operands: number, acc: boolean): string | undefined {
  if (exprArity(e) > operands)
    return `the expression reads $${exprArity(e) - 1} but there are ${operands} operand(s)`;
  if (!acc && usesAcc(e)) return "the expression reads acc, which only an epilogue has";
  return undefined;
}

function sameFloat(ts: readonly TensorType[]): string | undefined {
  for (const t of ts)
    if (t.dtype !== ts[0].dtype || !isFloat(t.dtype))
      return `operands must share one float dtype, got ${ts.map(formatType).join(", ")}`;
  return undefined;
}

/** softmax over the last axis of x·scale, with the causal and key masks applied first. */
function scaleSoftmax(
  x: NDArray,
  scale: number,
  causal: boolean,
  mask: NDArray | undefined,
  ctx: EvalContext,
): NDArray {
  const out = x.shape;
  let s = mapBroadcast(out, [x], (v) => v * scale);
  if (causal) s = NN.causal_mask.eval({}, [s], out, ctx);
  if (mask) s = NN.masked_fill.eval({ value: -Infinity }, [s, mask], out, ctx);
  return NN.softmax.eval({ axis: out.length - 1 }, [s], out, ctx);
}

export const FUSED: { readonly [O in FusedOp]: OpDecl<O> } = {
  // An elementwise expression over broadcast operands: one map kernel.
  map: {
    arity: [1, Infinity],
    attrs: { expr: "expr" },
    type: (a, ins) => {
      const bad = checkExpr(a.expr, ins.length, false) ?? sameFloat(ins);
      if (bad) return bad;
      const shape = broadcastAll(ins);
      return typeof shape === "string" ? shape : { dtype: ins[0].dtype, shape };
    },
    eval: (a, ins, out) => mapBroadcast(out, ins, (...xs) => evalExpr(a.expr, xs)),
  },
  // (a × b) finished per element by the expression of acc and the extra operands $0, $1, …
  matmul_epilogue: {
    arity: [2, Infinity],
    attrs: { transposeB: "bool", expr: "expr" },
    type: (a, ins) => {
      const mm = STRUCTURAL.matmul.type({ transposeB: a.transposeB }, ins.slice(0, 2));
      if (typeof mm === "string") return mm;
      const extras = ins.slice(2);
      const bad = checkExpr(a.expr, extras.length, true) ?? sameFloat(ins);
      if (bad) return bad;
      for (const e of extras) {
        const s = broadcastShapes(mm.shape, e.shape);
        if (typeof s === "string" || !shapeEq(s, mm.shape))
          return `epilogue operand ${formatShape(e.shape)} does not broadcast to ${formatShape(mm.shape)}`;
      }
      return mm;
    },
    eval: (a, [x, w, ...extras], out) =>
      mapBroadcast(out, [matmulEval(a.transposeB, x, w, out), ...extras], (acc, ...xs) =>
        evalExpr(a.expr, xs, acc),
      ),
  },
  // layer_norm(expr($0, $1, …), γ, β): the residual add (or any elementwise prologue) folded in.
  layer_norm_map: {
    arity: [3, Infinity],
    attrs: { eps: "float", expr: "expr" },
    type: (a, [g, b, ...xs]) => {
      const bad = checkExpr(a.expr, xs.length, false) ?? sameFloat([g, b, ...xs]);
      if (bad) return bad;
      const shape = broadcastAll(xs);
      if (typeof shape === "string") return shape;
      return NN.layer_norm.type({ eps: a.eps }, [{ dtype: g.dtype, shape }, g, b]);
    },
    eval: (a, [g, b, ...xs], out, ctx) =>
      NN.layer_norm.eval(
        { eps: a.eps },
        [mapBroadcast(out, xs, (...v) => evalExpr(a.expr, v)), g, b],
        out,
        ctx,
      ),
  },
  // softmax(mask(x · scale)) over the last axis; the optional operand is a key mask (≠ 0: hidden).
  scale_softmax: {
    arity: [1, 2],
    attrs: { scale: "float", causal: "bool" },
    type: (a, [x, mask]) => {
      if (!isFloat(x.dtype) || x.shape.length < (a.causal ? 2 : 1))
        return `needs a float tensor [..,Tq,Tk], got ${formatType(x)}`;
      if (mask) {
        const s = broadcastShapes(x.shape, mask.shape);
        if (typeof s === "string" || !shapeEq(s, x.shape))
          return `mask ${formatShape(mask.shape)} must broadcast to ${formatShape(x.shape)}`;
      }
      return x;
    },
    eval: (a, [x, mask], _out, ctx) => scaleSoftmax(x, a.scale, a.causal, mask, ctx),
  },
  // Multi-head attention on merged heads: q [Tq,C], k and v [Tk,C] → [Tq,C], C = heads · D.
  // Scores never leave the kernel; kernels compute the softmax online (flash-style).
  attention: {
    arity: [3, 4],
    attrs: { heads: "int", scale: "float", causal: "bool" },
    type: (a, [q, k, v, mask]) => {
      const bad = sameFloat([q, k, v]);
      if (bad) return bad;
      if (q.shape.length !== 2 || k.shape.length !== 2 || v.shape.length !== 2)
        return `q, k, v must be [T,C], got ${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`;
      const c = q.shape[1];
      if (!dimEq(k.shape[1], c) || !dimEq(v.shape[1], c) || !dimEq(k.shape[0], v.shape[0]))
        return `q ${formatShape(q.shape)}, k ${formatShape(k.shape)}, v ${formatShape(v.shape)} do not agree`;
      if (typeof c !== "number" || a.heads < 1 || c % a.heads !== 0)
        return `${c} channels do not split into ${a.heads} heads`;
      if (mask && (mask.shape.length !== 1 || !dimEq(mask.shape[0], k.shape[0])))
        return `key mask ${formatShape(mask.shape)} must be [${k.shape[0]}]`;
      return q;
    },
    eval: (a, [q, k, v, mask], out, ctx) => {
      const [tq, c] = q.shape;
      const tk = k.shape[0];
      const d = c / a.heads;
      const res = ndarray(out);
      const head = (x: NDArray, t: number, h: number): NDArray =>
        ndarray(
          [t, d],
          Array.from({ length: t * d }, (_, i) => x.data[Math.floor(i / d) * c + h * d + (i % d)]),
        );
      for (let h = 0; h < a.heads; h++) {
        const s = matmulEval(true, head(q, tq, h), head(k, tk, h), [tq, tk]);
        const p = scaleSoftmax(
          s,
          a.scale,
          a.causal,
          mask ? ndarray([1, tk], mask.data) : undefined,
          ctx,
        );
        const o = matmulEval(false, p, head(v, tk, h), [tq, d]);
        for (let i = 0; i < tq; i++)
          for (let j = 0; j < d; j++) res.data[i * c + h * d + j] = o.data[i * d + j];
      }
      return res;
    },
  },
};
