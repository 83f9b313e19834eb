/** fuse-qkv — several projections of one input become one matmul:
 *
 *    matmul(x, W1), …, matmul(x, Wn)   ⇒  y = matmul(x, concat(W1, …, Wn)); slice(y) for each
 *    add(matmul(x, Wi), bi) for every i ⇒  y = add(matmul(x, concat(W…)), concat(b…)); slice(y) …
 *
 *  Projections are matmuls with x as the left operand, the same transposeB, and a param-only
 *  weight (computed from params and constants only: a param, a slice of one, …) that is a matrix:
 *  [in,out], concatenated along axis 1, or [out,in] with transposeB, along axis 0. Every such
 *  projection of x joins: q, k and v of one layer, or k and v of every decoder layer's
 *  cross-attention, which all read the encoder memory. The slices, along the last axis of y,
 *  take the place (and name) of what they replace. Bias adds merge when every projection of the
 *  group has exactly one: add(mm, b) or add(b, mm), b a param-only [out] vector, and the matmul
 *  used by nothing else; otherwise the adds stay, on the slices.
 *
 *  Concatenated weights are a weight transform: the lowering computes them once, at load time.
 *  Refused (NotFused) for a projection of an x that has other projections: its weight is computed
 *  from activations, or is not a matrix, or no other projection shares its transposeB.
 *  An x that is itself param-only is skipped (a weight transform, not an activation). */
import { nodeData, operands, topoOrder, type Graph, type NodeData } from "../ir/graph.ts";
import { shapeEq, type Shape } from "../ir/shape.ts";
import type { NotFused, Pass } from "./pass.ts";
import {
  asGraph,
  coversOf,
  describe,
  draft,
  dropUnused,
  freeze,
  insert,
  replaceNode,
  type Draft,
} from "./rewrite.ts";

const NAME = "fuse-qkv";

/** Does `key` depend on params and constants only (no input, no range over a symbolic dim)? */
function paramOnly(g: Graph, key: string, memo: Map<string, boolean>): boolean {
  const known = memo.get(key);
  if (known !== undefined) return known;
  const op = nodeData(g, key).op;
  const r =
    op === "param" || op === "const"
      ? true
      : op === "input" || op === "range"
        ? false
        : operands(g, key).every((o) => paramOnly(g, o, memo));
  memo.set(key, r);
  return r;
}

interface Projection {
  readonly mm: string;
  readonly weight: string;
  readonly out: number;
  /** The bias add that finishes it, and its bias vector, when it has exactly one. */
  readonly bias?: { readonly add: string; readonly b: string };
}

/** The bias add of projection `mm`, when mm's only use is add(mm, b) with b a param-only [out]. */
function biasOf(g: Graph, mm: string, out: number, memo: Map<string, boolean>): Projection["bias"] {
  if (g.nodes.outDegree(mm) !== 1 || g.outputs.includes(mm)) return undefined;
  const add = g.nodes.outNeighbors(mm)[0];
  const n = nodeData(g, add);
  if (n.op !== "add") return undefined;
  const [a, b] = operands(g, add);
  const bias = a === mm ? b : a;
  const t = nodeData(g, bias).type.shape;
  const keepsShape = shapeEq(n.type.shape, nodeData(g, mm).type.shape);
  return t.length === 1 && t[0] === out && keepsShape && bias !== mm && paramOnly(g, bias, memo)
    ? { add, b: bias }
    : undefined;
}

/** Sorts the matmul users of x into mergeable groups (by transposeB) and refusals. */
function projections(
  g: Graph,
  x: string,
  memo: Map<string, boolean>,
  rank: ReadonlyMap<string, number>,
): { groups: [boolean, Projection[]][]; refused: [string, string][] } {
  const mms = g.nodes
    .outEdges(x)
    .filter((e) => g.nodes.getEdgeAttributes(e).slot === 0)
    .map((e) => g.nodes.target(e))
    .filter((k) => nodeData(g, k).op === "matmul")
    .sort((a, b) => rank.get(a)! - rank.get(b)!);
  const refused: [string, string][] = [];
  const byT = new Map<boolean, Projection[]>();
  if (mms.length < 2) return { groups: [], refused };
  for (const mm of mms) {
    const n = nodeData(g, mm);
    if (n.op !== "matmul") continue;
    const weight = operands(g, mm)[1];
    const w = nodeData(g, weight).type.shape;
    const out = n.attrs.transposeB ? w[0] : w[1];
    if (!paramOnly(g, weight, memo))
      refused.push([mm, `its weight ${describe(g, weight)} is computed from activations`]);
    else if (w.length !== 2 || typeof out !== "number")
      refused.push([mm, `its weight ${describe(g, weight)} is not a matrix of known size`]);
    else {
      const p: Projection = { mm, weight, out, bias: biasOf(g, mm, out, memo) };
      byT.set(n.attrs.transposeB, [...(byT.get(n.attrs.transposeB) ?? []), p]);
    }
  }
  const groups = [...byT].filter(([, ps]) => ps.length >= 2);
  // A lone projection is worth a word only when another one differs from it in transposeB (one
  // refused for its weight already has its own).
  for (const [t, ps] of byT)
    if (ps.length === 1 && byT.size === 2)
      refused.push([
        ps[0].mm,
        `no other projection of ${describe(g, x)} has transposeB=${String(t)}`,
      ]);
  return { groups, refused };
}

/** Adds a node made by this pass, with the DSL line of `like` (a node it stands in for). */
function made(
  d: Draft,
  hint: string,
  like: string,
  node: NodeData,
  ins: readonly string[],
): string {
  const loc = nodeData(d, like).loc;
  return insert(d, hint, { ...node, ...(loc ? { loc } : {}), origin: NAME }, ins);
}

/** y = matmul(x, concat(W…)), plus concat(b…) when every projection has its bias; returns y. */
function mergedProjection(d: Draft, x: string, ps: readonly Projection[], tB: boolean): string {
  const first = nodeData(d, ps[0].mm);
  const dtype = first.type.dtype;
  const total = ps.reduce((s, p) => s + p.out, 0);
  const inFeatures = nodeData(d, ps[0].weight).type.shape[tB ? 1 : 0];
  const wShape = tB ? [total, inFeatures] : [inFeatures, total];
  const yType = { dtype, shape: [...first.type.shape.slice(0, -1), total] };
  const weights = ps.map((p) => p.weight);
  const biases = ps.flatMap((p) => (p.bias ? [p.bias] : []));
  const withBias = biases.length === ps.length;
  const concat = (axis: number, shape: Shape) => ({
    op: "concat" as const,
    attrs: { axis },
    type: { dtype, shape },
    covers: [],
  });
  const w = made(d, `${x}_w`, weights[0], concat(tB ? 0 : 1, wShape), weights);
  const mm = made(
    d,
    withBias ? `${x}_proj_mm` : `${x}_proj`,
    ps[0].mm,
    {
      op: "matmul",
      attrs: { transposeB: tB },
      type: yType,
      covers: ps.flatMap((p) => coversOf(d, p.mm)),
    },
    [x, w],
  );
  if (!withBias) return mm;
  const bs = biases.map((b) => b.b);
  const b = made(d, `${x}_b`, bs[0], concat(0, [total]), bs);
  const adds = biases.map((b) => b.add);
  const covers = adds.flatMap((a) => coversOf(d, a));
  return made(d, `${x}_proj`, adds[0], { op: "add", attrs: {}, type: yType, covers }, [mm, b]);
}

/** Merges projections `ps` of x: the merged value, then a slice of it in the place (and under
 *  the name) of each projection's result, the bias add when it merged. */
function merge(d: Draft, x: string, ps: readonly Projection[], tB: boolean): void {
  const y = mergedProjection(d, x, ps, tB);
  const withBias = nodeData(d, y).op === "add";
  const axis = nodeData(d, y).type.shape.length - 1;
  let start = 0;
  for (const p of ps) {
    const at = withBias ? p.bias!.add : p.mm;
    const n = nodeData(d, at);
    replaceNode(
      d,
      at,
      {
        op: "slice",
        attrs: { axis, start, size: p.out },
        type: n.type,
        ...(n.loc ? { loc: n.loc } : {}),
        origin: NAME,
        covers: [],
      },
      [y],
    );
    start += p.out;
  }
  if (withBias)
    dropUnused(
      d,
      ps.map((p) => p.mm),
    );
}

export const fuseQkv: Pass = {
  name: NAME,
  run: (g) => {
    const d = draft(g);
    const notFused: NotFused[] = [];
    let rewrites = 0;
    const memo = new Map<string, boolean>();
    const order = topoOrder(g);
    const rank = new Map(order.map((k, i) => [k, i]));
    for (const x of order) {
      if (!d.nodes.hasNode(x) || paramOnly(asGraph(d), x, memo)) continue;
      const { groups, refused } = projections(asGraph(d), x, memo, rank);
      for (const [mm, reason] of refused)
        notFused.push({ pattern: NAME, at: describe(g, mm), reason });
      for (const [tB, ps] of groups) {
        merge(d, x, ps, tB);
        rewrites++;
      }
    }
    return { graph: freeze(d), rewrites, notFused };
  },
};
