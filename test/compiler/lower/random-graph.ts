/** Random graphs for the lowering's property tests, built with the DSL so every one type-checks.
 *  A recipe is a list of integer triples (op, operand, operand); each picks an op and operands
 *  from a pool of values, and a step whose shapes do not fit is skipped. The pool starts with
 *  x f32[T,4], an embedding of tokens i32[T], and (with a source) y f32[S,4]. The ops cover every
 *  kernel family and every kind of view: heads split and merged, slices, concats, reductions,
 *  softmax along either axis, cross and self "attention" written out with matmuls. */
import fc from "fast-check";
import { ModelBuilder, type Tensor } from "../../../compiler/dsl/builder.ts";
import { multiHeadAttention, sinusoidalPositions } from "../../../compiler/dsl/layers.ts";
import * as p from "../../../compiler/dsl/primitives.ts";
import type { Graph } from "../../../compiler/ir/graph.ts";

export type Recipe = readonly (readonly [number, number, number])[];

export const recipeArb: fc.Arbitrary<Recipe> = fc.array(
  fc.tuple(fc.nat(1000), fc.nat(1000), fc.nat(1000)),
  { minLength: 1, maxLength: 14 },
);

const last = (t: Tensor): number | string => t.type.shape[t.type.shape.length - 1];
const rank = (t: Tensor): number => t.type.shape.length;
const same = (a: Tensor, b: Tensor): boolean =>
  rank(a) === rank(b) && a.type.shape.every((d, i) => d === b.type.shape[i]);

export function buildRandomGraph(recipe: Recipe, withSource: boolean): Graph {
  const m = new ModelBuilder("random");
  m.bound("T", 12, "the test's context");
  const tokens = m.input("tokens", "i32", ["T"]);
  const x = m.input("x", "f32", ["T", 4]);
  let n = 0;
  const param = (shape: number[]) => m.param(`w${n++}`, shape);
  const pool: Tensor[] = [x, p.gather(param([11, 4]), tokens)];
  if (withSource) pool.push(m.input("y", "f32", ["S", 4]));
  const step = (op: number, a: Tensor, b: Tensor, k: number): Tensor | undefined => {
    const c = last(a);
    const cn = typeof c === "number" ? c : 0;
    switch (op % 17) {
      case 0:
        return [p.tanh, p.relu, p.geluTanh, p.neg][k % 4](a);
      case 1:
        if (same(a, b)) return [p.add, p.sub, p.mul][k % 3](a, b);
        return cn ? p.add(a, param([cn])) : undefined;
      case 2: // a linear layer, either weight layout
        if (!cn || rank(a) !== 2) return undefined;
        return k % 2
          ? p.matmul(a, param([cn, 3 + (k % 4)]))
          : p.matmul(a, param([3 + (k % 4), cn]), { transposeB: true });
      case 3:
        return cn ? p.layerNormOp(a, param([cn]), param([cn]), 1e-5) : undefined;
      case 4:
        return p.softmax(a, k % rank(a));
      case 5: // split heads [R, C] → [2, R, C/2]
        if (rank(a) !== 2 || !cn || cn % 2) return undefined;
        return p.transpose(p.reshape(a, [a.type.shape[0], 2, cn / 2]), [1, 0, 2]);
      case 6: {
        // merge heads [H, R, D] → [R, H·D] (a copy: no strides express it)
        if (rank(a) !== 3) return undefined;
        const [h, r, d] = a.type.shape;
        if (typeof h !== "number" || typeof d !== "number") return undefined;
        return p.reshape(p.transpose(a, [1, 0, 2]), [r, h * d]);
      }
      case 7: {
        if (!cn) return undefined;
        const start = k % cn;
        return p.slice(a, rank(a) - 1, start, 1 + (k % (cn - start)));
      }
      case 8: {
        const sameButLast =
          rank(a) === rank(b) &&
          a.type.shape.every((d, i) => i === rank(a) - 1 || d === b.type.shape[i]);
        return sameButLast ? m.node("concat", { axis: rank(a) - 1 }, [a, b]) : undefined;
      }
      case 9:
        return (k % 2 ? p.sum : p.mean)(a, k % rank(a));
      case 10:
        return p.mul(a, (k % 7) / 3 - 1);
      case 11: {
        // attention written out: softmax(a·bᵀ)·b, over b's rows (cross when b is over S)
        if (rank(a) !== 2 || rank(b) !== 2 || last(b) !== c) return undefined;
        const s = p.matmul(a, b, { transposeB: true });
        return p.matmul(p.softmax(k % 2 ? p.causalMask(s) : s, -1), b);
      }
      case 12:
        return rank(a) >= 2 ? p.softmax(p.causalMask(a), -1) : undefined;
      case 13:
        return p.gather(param([5, 3]), tokens);
      case 14: // batched scores over heads
        return rank(a) === 3 && same(a, b) ? p.matmul(a, b, { transposeB: true }) : undefined;
      case 15: // multi-head attention as the models write it (what fuse-attention fuses)
        if (rank(a) !== 2 || rank(b) !== 2 || last(b) !== c || cn % 2) return undefined;
        return multiHeadAttention(a, b, b, 2, { causal: k % 2 === 1 });
      case 16: // positions: a range over the rows
        if (rank(a) !== 2 || !cn || cn % 2) return undefined;
        return p.add(a, sinusoidalPositions(a, a.type.shape[0], cn));
    }
    return undefined;
  };
  for (const [op, i, j] of recipe) {
    const t = step(op, pool[i % pool.length], pool[j % pool.length], i + j);
    if (t) pool.push(t);
  }
  const outs =
    pool.length > 3 ? [pool[pool.length - 1], pool[pool.length - 2]] : [pool[pool.length - 1]];
  return m.finish(outs);
}
