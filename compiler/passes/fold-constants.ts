/** fold-constants — evaluates, at compile time, ops whose operands are all constants.
 *  Rule: op(const a, const b, …) ⇒ const v, when every element of the result is one value v. A
 *  `const` fills its type with one value, so elementwise ops, data movement, and reductions and
 *  softmaxes over an axis of known length keep the result uniform.
 *  Nodes are visited in topological order, so a chain of constants folds in one run; the folded
 *  node keeps its name and users, and constants left without users are dropped.
 *  Never folds: sources (a param's values are the checkpoint's, unknown here; range and
 *  sinusoidal vary along an axis whose size may be symbolic), ops whose result varies along an
 *  axis (causal_mask, a causal scale_softmax), gather (its ids are checked at run time), and a
 *  reduction over a symbolic axis. Values are computed in float64 exactly as the interpreter
 *  computes them (same operations, same order), so the folded graph gives the same numbers. */
import { assertNever } from "../errors.ts";
import { evalExpr } from "../ir/expr.ts";
import { nodeData, operands, topoOrder, type NodeData } from "../ir/graph.ts";
import { BINARY_FN, UNARY_FN } from "../ir/ops-elementwise.ts";
import type { Dim } from "../ir/shape.ts";
import type { Pass } from "./pass.ts";
import { asGraph, coversOf, draft, dropUnused, freeze, replaceNode } from "./rewrite.ts";

const known = (d: Dim | undefined): number | undefined => (typeof d === "number" ? d : undefined);

/** Σ of `len` copies of v, summed as the interpreter's reductions sum them. */
function sumOf(v: number, len: number): number {
  let s = 0;
  for (let k = 0; k < len; k++) s += v;
  return s;
}

/** One element of a softmax over `len` copies of v (a row of −∞ gives 0, as in the op). */
function softmaxOf(v: number, len: number): number {
  const m = len > 0 ? Math.max(-Infinity, v) : -Infinity;
  if (m === -Infinity) return 0;
  return Math.exp(v - m) / sumOf(Math.exp(v - m), len);
}

/** One element of layer_norm over rows of c copies of x. */
function layerNormOf(x: number, g: number, b: number, eps: number, c: number): number {
  const mean = sumOf(x, c) / c;
  const v = sumOf((x - mean) ** 2, c);
  return (x - mean) * (1 / Math.sqrt(v / c + eps)) * g + b;
}

/** (a × b) accumulated over an inner dim of k. */
function dotOf(a: number, b: number, k: number): number {
  return sumOf(a * b, k);
}

/** The single value of node n's result when its operands are constants `vs` of the operand types
 *  in `ins`, or undefined when the result is not one repeated value (or not known here). */
export function foldedValue(
  n: NodeData,
  vs: readonly number[],
  ins: readonly NodeData[],
): number | undefined {
  const last = (t: NodeData) => known(t.type.shape[t.type.shape.length - 1]);
  switch (n.op) {
    case "input":
    case "param":
    case "const":
    case "range":
    case "sinusoidal":
    case "causal_mask":
    case "gather":
    case "attention":
      return undefined;
    case "add":
    case "sub":
    case "mul":
    case "div":
      return BINARY_FN[n.op](vs[0], vs[1]);
    case "neg":
    case "exp":
    case "sqrt":
    case "rsqrt":
    case "tanh":
    case "relu":
    case "gelu":
    case "gelu_tanh":
      return UNARY_FN[n.op](vs[0]);
    case "map":
      return evalExpr(n.attrs.expr, vs);
    case "transpose":
    case "reshape":
    case "slice":
      return vs[0];
    case "concat":
      return vs.every((v) => Object.is(v, vs[0])) ? vs[0] : undefined;
    case "matmul": {
      const k = last(ins[0]);
      return k === undefined ? undefined : dotOf(vs[0], vs[1], k);
    }
    case "matmul_epilogue": {
      const k = last(ins[0]);
      return k === undefined
        ? undefined
        : evalExpr(n.attrs.expr, vs.slice(2), dotOf(vs[0], vs[1], k));
    }
    case "reduce_sum":
    case "reduce_mean": {
      const len = known(ins[0].type.shape[n.attrs.axis]);
      if (len === undefined) return undefined;
      return n.op === "reduce_sum" ? sumOf(vs[0], len) : sumOf(vs[0], len) / len;
    }
    case "softmax": {
      const len = known(ins[0].type.shape[n.attrs.axis]);
      return len === undefined ? undefined : softmaxOf(vs[0], len);
    }
    case "scale_softmax": {
      const len = last(ins[0]);
      if (n.attrs.causal || len === undefined) return undefined;
      return vs.length > 1 && vs[1] !== 0 ? 0 : softmaxOf(vs[0] * n.attrs.scale, len);
    }
    case "masked_fill":
      return vs[1] !== 0 ? n.attrs.value : vs[0];
    case "layer_norm": {
      const c = last(ins[0]);
      return c === undefined ? undefined : layerNormOf(vs[0], vs[1], vs[2], n.attrs.eps, c);
    }
    case "layer_norm_map": {
      const c = last(n);
      if (c === undefined) return undefined;
      return layerNormOf(evalExpr(n.attrs.expr, vs.slice(2)), vs[0], vs[1], n.attrs.eps, c);
    }
    default:
      return assertNever(n, "op");
  }
}

export const foldConstants: Pass = {
  name: "fold-constants",
  run: (g) => {
    const d = draft(g);
    const dg = asGraph(d);
    const emptied: string[] = [];
    let rewrites = 0;
    for (const key of topoOrder(g)) {
      const ins = operands(dg, key);
      if (ins.length === 0) continue;
      const insData = ins.map((k) => nodeData(dg, k));
      const vs: number[] = [];
      for (const i of insData) if (i.op === "const") vs.push(i.attrs.value);
      if (vs.length < ins.length) continue;
      const n = nodeData(dg, key);
      const value = foldedValue(n, vs, insData);
      if (value === undefined) continue;
      const covers = new Set([...coversOf(dg, key), ...ins.flatMap((k) => coversOf(dg, k))]);
      replaceNode(
        d,
        key,
        {
          op: "const",
          attrs: { value },
          type: n.type,
          ...(n.loc !== undefined ? { loc: n.loc } : {}),
          origin: "fold-constants",
          covers: [...covers],
        },
        [],
      );
      emptied.push(...ins);
      rewrites++;
    }
    dropUnused(d, emptied);
    return { graph: freeze(d), rewrites, notFused: [] };
  },
};
