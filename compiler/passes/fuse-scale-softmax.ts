/** fuse-scale-softmax — softmax(mask(x · c)) ⇒ scale_softmax(x, [key mask]) {scale=c, causal}
 *
 *  Rule: walking up from a softmax over the last axis, the pass absorbs
 *    - masked_fill(·, m) {value=−∞}: m becomes the key-mask operand, as it is (a reshaped [1,1,Tk]
 *      mask stays reshaped: scale_softmax broadcasts it);
 *    - causal_mask(·);
 *  in either order, then at most one
 *    - mul(·, c) or mul(c, ·) with c a scalar const: scale = c; or div(·, c): scale = 1/c,
 *  and x is what the chain starts from. It fires when it absorbed anything: the mul alone, or a
 *  mask without a mul (scale 1). A mul below a mask is not absorbed (scale_softmax scales first).
 *
 *  Preconditions, each a NotFused when it fails: the softmax is over the last axis; every absorbed
 *  node (the mul, the masks) has the chain as its only use and is not a graph output; a
 *  masked_fill fills −∞ (a finite value is not a mask); the multiplier is a constant whose every
 *  dim is 1 and which does not broadcast x to a bigger shape. Run after fold-constants, so a scale
 *  computed from constants is a const here. */
import { nodeData, operands, topoOrder, type Graph } from "../ir/graph.ts";
import { formatNumber } from "../ir/format-number.ts";
import { shapeEq } from "../ir/shape.ts";
import type { NotFused, Pass } from "./pass.ts";
import { asGraph, coversOf, describe, draft, dropUnused, freeze, replaceNode } from "./rewrite.ts";

const NAME = "fuse-scale-softmax";

/** What feeds a softmax: x, the scale, the masks, and the nodes between x and the softmax. */
export interface SoftmaxChain {
  /** The value the chain starts from (scale_softmax's first operand). */
  readonly x: string;
  readonly scale: number;
  readonly causal: boolean;
  /** The key mask as it is fed to masked_fill (broadcast to x). */
  readonly mask?: string;
  /** The absorbed nodes, from the softmax's operand down; empty for a bare softmax. */
  readonly absorbed: readonly string[];
  /** Why the chain cannot be fused, when it cannot. */
  readonly problem?: string;
}

/** The value of a const whose every dim is 1, else undefined. */
function scalarConst(g: Graph, key: string): number | undefined {
  const n = nodeData(g, key);
  return n.op === "const" && n.type.shape.every((d) => d === 1) ? n.attrs.value : undefined;
}

/** A use at the chain's slot 0 and nowhere else: one out-edge, not a graph output. */
function onlyUse(g: Graph, key: string): boolean {
  return g.nodes.outDegree(key) === 1 && !g.outputs.includes(key);
}

/** The chain below softmax `top` (its operand and further up). `top` itself is not checked. */
export function softmaxChain(g: Graph, top: string): SoftmaxChain {
  const absorbed: string[] = [];
  let problem: string | undefined;
  let causal = false;
  let mask: string | undefined;
  let scale = 1;
  const absorb = (k: string): void => {
    absorbed.push(k);
    if (!onlyUse(g, k)) problem ??= `${describe(g, k)} has another user`;
  };
  let at = operands(g, top)[0];
  for (;;) {
    const n = nodeData(g, at);
    const ins = operands(g, at);
    if (n.op === "masked_fill" && mask === undefined) {
      if (n.attrs.value !== -Infinity)
        problem ??= `${describe(g, at)} fills ${formatNumber(n.attrs.value)}, not −∞`;
      absorb(at);
      mask = ins[1];
      at = ins[0];
    } else if (n.op === "causal_mask" && !causal) {
      absorb(at);
      causal = true;
      at = ins[0];
    } else if (n.op === "mul" || n.op === "div") {
      const slots = n.op === "mul" ? [1, 0] : [1];
      const c = slots.find((s) => scalarConst(g, ins[s]) !== undefined);
      const what = n.op === "mul" ? "multiplier" : "divisor";
      if (c === undefined) problem ??= `the ${what} in ${describe(g, at)} is not a scalar constant`;
      else if (!shapeEq(nodeData(g, ins[1 - c]).type.shape, n.type.shape))
        problem ??= `the scalar ${what} in ${describe(g, at)} broadcasts x to a bigger shape`;
      if (c === undefined || problem) return { x: at, scale, causal, mask, absorbed, problem };
      absorb(at);
      const v = scalarConst(g, ins[c])!;
      return { x: ins[1 - c], scale: n.op === "mul" ? v : 1 / v, causal, mask, absorbed, problem };
    } else return { x: at, scale, causal, mask, absorbed, problem };
  }
}

/** The softmax axis problem, if any: scale_softmax (and attention) work over the last axis. */
export function lastAxisProblem(g: Graph, key: string): string | undefined {
  const n = nodeData(g, key);
  if (n.op !== "softmax") return undefined;
  const last = n.type.shape.length - 1;
  return n.attrs.axis === last
    ? undefined
    : `softmax over axis ${n.attrs.axis}, not the last (${last})`;
}

export const fuseScaleSoftmax: Pass = {
  name: NAME,
  run: (g) => {
    const d = draft(g);
    const notFused: NotFused[] = [];
    let rewrites = 0;
    for (const key of topoOrder(g)) {
      const n = nodeData(g, key);
      if (n.op !== "softmax") continue;
      const dg = asGraph(d);
      const chain = softmaxChain(dg, key);
      if (chain.absorbed.length === 0 && !chain.problem) continue; // a bare softmax
      const problem = lastAxisProblem(dg, key) ?? chain.problem;
      if (problem) {
        notFused.push({ pattern: NAME, at: describe(g, key), reason: problem });
        continue;
      }
      const covers = [...chain.absorbed]
        .reverse()
        .concat(key)
        .flatMap((k) => coversOf(dg, k));
      replaceNode(
        d,
        key,
        {
          op: "scale_softmax",
          attrs: { scale: chain.scale, causal: chain.causal },
          type: n.type,
          ...(n.loc ? { loc: n.loc } : {}),
          origin: NAME,
          covers,
        },
        chain.mask === undefined ? [chain.x] : [chain.x, chain.mask],
      );
      dropUnused(d, chain.absorbed);
      rewrites++;
    }
    return { graph: freeze(d), rewrites, notFused };
  },
};
