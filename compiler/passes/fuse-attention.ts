/** fuse-attention — the attention core on split heads becomes one `attention` op on merged heads:
 *
 *    mergeHeads(matmul(P(matmul(splitHeads(q), splitHeads(k), transposeB)), splitHeads(v)))
 *      ⇒ attention(q, k, v, [key mask]) {heads, scale, causal}
 *
 *  where splitHeads(x) = transpose(reshape(x, [T,H,D]), [1,0,2]) of an x [T,C] with C = H·D,
 *  mergeHeads(o) = reshape(transpose(o, [1,0,2]), [T,C]), and P is either a scale_softmax (what
 *  fuse-scale-softmax makes) or a softmax over the last axis with its unfused chain below it
 *  (mul by a scalar const, causal_mask, masked_fill −∞: the chain fuse-scale-softmax matches), so
 *  the pass does not depend on running after fuse-scale-softmax. The key mask must be constant
 *  over heads and queries ([1,1,Tk], [1,Tk] or [Tk]); the fused op takes it as [Tk]: the operand
 *  of the reshape that made it, or a new reshape.
 *
 *  The fused node covers every node of the pattern (the split reshapes and transposes, both
 *  matmuls, the softmax and its chain, the merge, and the mask's reshape when nothing else uses
 *  it), so no [H,Tq,Tk] value is left to materialize. A candidate is a softmax (or scale_softmax)
 *  of a rank-3 matmul with transposeB; it is refused (NotFused) when an intermediate has a use
 *  outside the pattern, a head layout is not the one above, or q, k and v disagree on heads. */
import { nodeData, operands, topoOrder, type Graph } from "../ir/graph.ts";
import { inferType } from "../ir/infer.ts";
import { formatShape, shapeEq, type Dim } from "../ir/shape.ts";
import { lastAxisProblem, softmaxChain, type SoftmaxChain } from "./fuse-scale-softmax.ts";
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

const NAME = "fuse-attention";

/** splitHeads(src): src [T,C] → reshape [T,H,D] → transpose [1,0,2]. */
interface Heads {
  readonly src: string;
  readonly reshape: string;
  readonly transpose: string;
  readonly t: Dim;
  readonly h: number;
  readonly d: number;
}

/** The matched pattern, everything the fused node needs. */
interface Match {
  readonly q: Heads;
  readonly k: Heads;
  readonly v: Heads;
  readonly chain: SoftmaxChain;
  readonly probs: string;
  readonly out: string; // matmul(probs, v heads)
  readonly merge: readonly [string, string]; // transpose, reshape (the fused node's place)
}

const isPerm102 = (perm: readonly number[]): boolean =>
  perm.length === 3 && perm[0] === 1 && perm[1] === 0 && perm[2] === 2;

/** Reads splitHeads at `key`, or says why it is not that layout. */
function readSplit(g: Graph, key: string, what: string): Heads | string {
  const tr = nodeData(g, key);
  if (tr.op !== "transpose" || !isPerm102(tr.attrs.perm))
    return `the ${what} heads ${describe(g, key)} are not transpose(·, [1,0,2])`;
  const reshape = operands(g, key)[0];
  const rs = nodeData(g, reshape);
  const src = rs.op === "reshape" ? operands(g, reshape)[0] : undefined;
  const x = src === undefined ? [] : nodeData(g, src).type.shape;
  if (rs.op !== "reshape" || src === undefined || x.length !== 2)
    return `the ${what} heads ${describe(g, key)} are not a reshape of a [T,C] value`;
  const [t, h, d] = rs.attrs.shape;
  if (
    rs.attrs.shape.length !== 3 ||
    t !== x[0] ||
    typeof h !== "number" ||
    typeof d !== "number" ||
    h * d !== x[1]
  )
    return `the ${what} heads ${describe(g, reshape)} reshape ${formatShape(x)} to ${formatShape(rs.attrs.shape)}, not [T,H,D] with H·D = C`;
  return { src, reshape, transpose: key, t, h, d };
}

/** The single user of `key` at slot 0, when that is its only use. */
function soleUser(g: Graph, key: string): string | undefined {
  if (g.nodes.outDegree(key) !== 1 || g.outputs.includes(key)) return undefined;
  const e = g.nodes.outEdges(key)[0];
  return g.nodes.getEdgeAttributes(e).slot === 0 ? g.nodes.target(e) : undefined;
}

/** The probabilities' chain: a scale_softmax's attributes, or the unfused softmax chain. */
function probsChain(g: Graph, key: string): SoftmaxChain | undefined {
  const n = nodeData(g, key);
  if (n.op === "scale_softmax") {
    const [x, mask] = operands(g, key);
    return { x, scale: n.attrs.scale, causal: n.attrs.causal, mask, absorbed: [] };
  }
  if (n.op !== "softmax") return undefined;
  const chain = softmaxChain(g, key);
  const axis = lastAxisProblem(g, key);
  return axis ? { ...chain, problem: axis } : chain;
}

/** Is `key` an attention candidate: scores = matmul(·, ·, transposeB) of rank 3 under a softmax. */
function scoresOf(g: Graph, chain: SoftmaxChain): boolean {
  const s = nodeData(g, chain.x);
  return s.op === "matmul" && s.attrs.transposeB && s.type.shape.length === 3;
}

/** Matches the pattern around the probabilities `probs`, or says why not. */
function match(g: Graph, probs: string, chain: SoftmaxChain): Match | string {
  if (chain.problem) return chain.problem;
  const scores = chain.x;
  const [qh, kh] = operands(g, scores);
  const out = soleUser(g, probs);
  const o = out === undefined ? undefined : nodeData(g, out);
  if (out === undefined || o?.op !== "matmul" || o.attrs.transposeB)
    return `the probabilities ${describe(g, probs)} are used other than by one matmul with v`;
  const q = readSplit(g, qh, "query");
  if (typeof q === "string") return q;
  const k = readSplit(g, kh, "key");
  if (typeof k === "string") return k;
  const v = readSplit(g, operands(g, out)[1], "value");
  if (typeof v === "string") return v;
  if (q.h !== k.h || q.h !== v.h || q.d !== k.d || q.d !== v.d || k.t !== v.t)
    return `the heads disagree: q ${formatShape([q.t, q.h, q.d])}, k ${formatShape([k.t, k.h, k.d])}, v ${formatShape([v.t, v.h, v.d])}`;
  const tr = soleUser(g, out);
  const trn = tr === undefined ? undefined : nodeData(g, tr);
  if (tr === undefined || trn?.op !== "transpose" || !isPerm102(trn.attrs.perm))
    return `the attention output ${describe(g, out)} is not merged by a transpose [1,0,2]`;
  const rs = soleUser(g, tr);
  const rsn = rs === undefined ? undefined : nodeData(g, rs);
  if (rs === undefined || rsn?.op !== "reshape" || !shapeEq(rsn.type.shape, [q.t, q.h * q.d]))
    return `the attention output ${describe(g, tr)} is not merged by a reshape to [T,C]`;
  const m: Match = { q, k, v, chain, probs, out, merge: [tr, rs] };
  const inside = new Set(patternNodes(m));
  for (const key of inside)
    if (
      key !== rs &&
      (g.outputs.includes(key) || g.nodes.outNeighbors(key).some((u) => !inside.has(u)))
    )
      return `${describe(g, key)} has a user outside the attention pattern`;
  return m;
}

/** Every node the fused op replaces (not the mask's reshape: that one may be shared). */
function patternNodes(m: Match): string[] {
  const heads = [m.q, m.k, m.v].flatMap((h) => [h.reshape, h.transpose]);
  return [...new Set([...heads, m.chain.x, ...m.chain.absorbed, m.probs, m.out, ...m.merge])];
}

/** How the fused op gets its [Tk] key mask from `mask`, which broadcasts to [H,Tq,Tk] and must
 *  not vary over heads or queries: as it is ([Tk]), as the operand of the reshape that made it
 *  (which the fused node then covers), or through a new reshape. */
type KeyMask =
  | { readonly use: string; readonly reshape?: string }
  | { readonly reshapeOf: string; readonly tk: Dim };

function keyMask(g: Graph, mask: string, tk: Dim): KeyMask | string {
  const shape = nodeData(g, mask).type.shape;
  if (
    shape.length === 0 ||
    shape[shape.length - 1] !== tk ||
    shape.slice(0, -1).some((x) => x !== 1)
  )
    return `the mask ${describe(g, mask)} ${formatShape(shape)} is not one [${tk}] key mask for every head and query`;
  if (shape.length === 1) return { use: mask };
  const src = operands(g, mask)[0];
  if (nodeData(g, mask).op === "reshape" && shapeEq(nodeData(g, src).type.shape, [tk]))
    return { use: src, reshape: mask };
  return { reshapeOf: mask, tk };
}

/** Builds the fused node in place of the merge reshape, or says why it cannot. */
function fuse(d: Draft, m: Match): string | undefined {
  const g = asGraph(d);
  const [, at] = m.merge;
  const n = nodeData(g, at);
  const km = m.chain.mask === undefined ? undefined : keyMask(g, m.chain.mask, m.k.t);
  if (typeof km === "string") return km;
  const maskType =
    km === undefined
      ? []
      : "use" in km
        ? [nodeData(g, km.use).type]
        : [{ dtype: nodeData(g, km.reshapeOf).type.dtype, shape: [km.tk] }];
  const attrs = { heads: m.q.h, scale: m.chain.scale, causal: m.chain.causal };
  const qkv = [m.q.src, m.k.src, m.v.src];
  const t = inferType("attention", attrs, [...qkv.map((k) => nodeData(g, k).type), ...maskType]);
  if (typeof t === "string") return `attention: ${t}`;
  if (t.dtype !== n.type.dtype || !shapeEq(t.shape, n.type.shape))
    return `attention gives ${formatShape(t.shape)}, not the merged ${formatShape(n.type.shape)}`;
  const nodes = patternNodes(m);
  const maskReshape = km !== undefined && "use" in km ? km.reshape : undefined;
  if (
    maskReshape !== undefined &&
    !g.outputs.includes(maskReshape) &&
    g.nodes.outNeighbors(maskReshape).every((u) => nodes.includes(u))
  )
    nodes.push(maskReshape);
  const loc = n.loc ? { loc: n.loc } : {};
  const mask =
    km === undefined
      ? []
      : "use" in km
        ? [km.use]
        : [
            insert(
              d,
              "key_mask",
              { op: "reshape", attrs: { shape: [km.tk] }, type: maskType[0], ...loc, origin: NAME },
              [km.reshapeOf],
            ),
          ];
  const covers = [...new Set(nodes.flatMap((k) => coversOf(g, k)))];
  replaceNode(d, at, { op: "attention", attrs, type: t, ...loc, origin: NAME, covers }, [
    ...qkv,
    ...mask,
  ]);
  dropUnused(
    d,
    nodes.filter((k) => k !== at),
  );
  return undefined;
}

export const fuseAttention: Pass = {
  name: NAME,
  run: (g) => {
    const d = draft(g);
    const notFused: NotFused[] = [];
    let rewrites = 0;
    for (const key of topoOrder(g)) {
      if (!d.nodes.hasNode(key)) continue;
      const dg = asGraph(d);
      const chain = probsChain(dg, key);
      if (chain === undefined || !scoresOf(dg, chain)) continue;
      const m = match(dg, key, chain);
      const refused = typeof m === "string" ? m : fuse(d, m);
      if (refused) notFused.push({ pattern: NAME, at: describe(g, key), reason: refused });
      else rewrites++;
    }
    return { graph: freeze(d), rewrites, notFused };
  },
};
