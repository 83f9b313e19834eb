/** fuse-matmul-epilogue — matmul(a, b) followed by elementwise work ⇒
 *  matmul_epilogue(a, b, extras…) {transposeB, expr}
 *
 *  Rule: from each matmul (or matmul_epilogue), walk down while the current value has exactly one
 *  user, is not a graph output, and that user is elementwise (add, sub, mul, div, a unary op, or a
 *  map) with the matmul's own output type, i.e. whose other operands broadcast to that shape
 *  without growing it. Each such user joins the epilogue; the last one's value is what the fused
 *  node computes, under that value's name. `expr` is written over `acc` and the extra operands
 *  `$i` (distinct values, numbered in order of first appearance; rank-0 consts become numbers),
 *  add and mul with the accumulator side first:
 *    add(matmul(x, w), b)                      ⇒ matmul_epilogue(x, w, b) {expr="add(acc, $0)"}
 *    gelu_tanh(add(matmul(x, w), b))           ⇒ {expr="gelu_tanh(add(acc, $0))"}
 *    add(res, add(matmul(x, w), b))            ⇒ {expr="add(add(acc, $0), $1)"}, $1 = res
 *
 *  Refusals, one NotFused per matmul: the value reached has a second user and one of its users is
 *  elementwise (it must be materialized); the user's other operand would broadcast the output to a
 *  bigger shape; a bare matmul's only user is not elementwise. Runs after fuse-attention (which
 *  consumes the attention matmuls) and before fuse-residual-layer-norm, so the residual add goes to
 *  the matmul that produces it. */
import { ACC, substitute, type Expr } from "../ir/expr.ts";
import { nodeData, operands, topoOrder, users, type Graph, type OpNode } from "../ir/graph.ts";
import { formatType, shapeEq } from "../ir/shape.ts";
import {
  MAX_TERMS,
  exprBuilder,
  isFusible,
  leaves,
  rebuild,
  renumber,
  secondUser,
  typeProblem,
} from "./expr-fusion.ts";
import type { NotFused, Pass } from "./pass.ts";
import { asGraph, describe, draft, freeze, type Draft } from "./rewrite.ts";

const NAME = "fuse-matmul-epilogue";

/** The elementwise users below matmul `m` that its epilogue can take, in order. */
function chainBelow(g: Graph, m: string, refuse: (reason: string) => void): string[] {
  const mm = nodeData(g, m);
  const chain: string[] = [];
  for (let tail = m; ;) {
    const us = users(g, tail);
    if (us.length === 0) return chain;
    if (us.length > 1 || g.outputs.includes(tail)) {
      if (us.some((u) => isFusible(nodeData(g, u)))) refuse(secondUser(g, tail));
      return chain;
    }
    const u = nodeData(g, us[0]);
    if (!isFusible(u)) {
      if (chain.length === 0 && mm.op === "matmul")
        refuse(`its only user %${us[0]} is a ${u.op}, which is not elementwise`);
      return chain;
    }
    if (u.type.dtype !== mm.type.dtype || !shapeEq(u.type.shape, mm.type.shape)) {
      refuse(
        `%${us[0]} would broadcast the output ${formatType(mm.type)} to ${formatType(u.type)}`,
      );
      return chain;
    }
    chain.push(us[0]);
    tail = us[0];
  }
}

/** The matmul_epilogue computing the last value of `chain` from matmul `m`, or undefined when
 *  its expression would exceed MAX_TERMS. */
function epilogue(g: Graph, m: string, chain: readonly string[]): [OpNode, string[]] | undefined {
  const mm = nodeData(g, m);
  const [a, b, ...extras] = operands(g, m);
  const l = leaves();
  const acc: Expr =
    mm.op === "matmul_epilogue" ? substitute(mm.attrs.expr, (i) => l.leaf(extras[i])) : ACC;
  const e = exprBuilder(g, {
    inside: new Set(chain),
    preset: new Map([[m, acc]]),
    leaf: l.leaf,
    inlineConsts: true,
    accFirst: true,
  })(chain[chain.length - 1]);
  if (!e) return undefined;
  const r = renumber(e, l.keys);
  const transposeB =
    mm.op === "matmul" || mm.op === "matmul_epilogue" ? mm.attrs.transposeB : false;
  return [{ op: "matmul_epilogue", attrs: { transposeB, expr: r.expr } }, [a, b, ...r.operands]];
}

/** Fuses the chain below `m` into one matmul_epilogue, as long a chain as fits; whether it did.
 *  Records one NotFused when the chain stopped short of an elementwise user. */
function fuseBelow(d: Draft, m: string, pattern: string, out: NotFused[] | undefined): boolean {
  const g = asGraph(d);
  const at = describe(g, m);
  let reason: string | undefined;
  const chain = chainBelow(g, m, (r) => (reason = r));
  let fused = false;
  for (let n = chain.length; n > 0 && !fused; n--) {
    const part = chain.slice(0, n);
    const tail = part[n - 1];
    const made = epilogue(g, m, part);
    if (!made) {
      if (n === chain.length)
        reason = `the epilogue through %${tail} would exceed ${MAX_TERMS} terms`;
      continue;
    }
    const [node, ins] = made;
    const bad = typeProblem(g, tail, node, ins);
    if (bad) {
      reason = bad;
      break;
    }
    rebuild(d, tail, node, ins, [m, ...part], pattern);
    fused = true;
  }
  if (reason) out?.push({ pattern, at, reason });
  return fused;
}

/** Every matmul's epilogue, in program order; the number of fusions. `out` collects refusals. */
export function fuseEpilogues(d: Draft, pattern: string, out: NotFused[] | undefined): number {
  const g = asGraph(d);
  const matmuls = topoOrder(g).filter((k) => {
    const op = nodeData(g, k).op;
    return op === "matmul" || op === "matmul_epilogue";
  });
  let n = 0;
  for (const m of matmuls) if (fuseBelow(d, m, pattern, out)) n++;
  return n;
}

export const fuseMatmulEpilogue: Pass = {
  name: NAME,
  run: (g) => {
    const d = draft(g);
    const notFusedHere: NotFused[] = [];
    const rewrites = fuseEpilogues(d, NAME, notFusedHere);
    return { graph: freeze(d), rewrites, notFused: notFusedHere };
  },
};
