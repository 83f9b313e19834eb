/** Can a step reuse the positions computed before it? Rule: a KV cache is valid when every step
 *  value holds the sequence dim T on at most one axis, that axis only ever carries "position t"
 *  (ops act on each position alone), and the only op that reads other positions is a causal
 *  self-attention whose q, k and v are [T,C] and that has no key mask. Each such attention caches
 *  k and v (lowered to one `attention_cached` kernel that reads the cached rows and appends the
 *  new ones: program.ts); everything else in the step then computes only the new positions.
 *
 *  A slice of the last position along T (start −1, size 1) is allowed too: the last of a step's
 *  new positions is the last of all, and what follows it no longer has T.
 *
 *  Refused, with the node and the cause: an op that reduces, normalizes, softmaxes, slices
 *  (otherwise), concatenates or contracts along T; a transpose or reshape that moves T; a value with T on two
 *  axes (scores [T,T], a causal mask over T); a gather from a table indexed by position; a
 *  non-causal self-attention, or one with a key mask; and a cache with no bound on T to size it. */
import { assertNever } from "../errors.ts";
import { nodeData, operands, type Graph } from "../ir/graph.ts";
import { dimSymbols, type Shape } from "../ir/shape.ts";
import type { PhaseInfo } from "./phases.ts";
import { symEq, symProduct } from "./sym.ts";

export type KvAnalysis =
  | { readonly ok: true; readonly cached: readonly string[]; readonly capacity: number | undefined }
  | { readonly ok: false; readonly reason: string };

class Refused {
  constructor(readonly reason: string) {}
}

/** The axis holding T: a number, undefined when absent, or a string saying what is wrong. */
function shapeAxis(shape: Shape, t: string): number | undefined | string {
  let found: number | undefined;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== "string" || !dimSymbols(d).includes(t)) continue;
    if (d !== t) return `its dim ${d} is not T alone`;
    if (found !== undefined) return `it has T on axes ${found} and ${i}, which mixes positions`;
    found = i;
  }
  return found;
}

export function analyzeKvCache(g: Graph, order: readonly string[], info: PhaseInfo): KvAnalysis {
  const t = info.seqDim;
  if (t === undefined) return { ok: false, reason: "no input has the sequence dim T" };
  const axis = new Map<string, number | undefined>();
  const cached: string[] = [];
  try {
    for (const key of order) {
      if (info.phase.get(key) !== "step") continue;
      const a = stepAxis(g, key, t, axis, cached);
      const want = shapeAxis(nodeData(g, key).type.shape, t);
      if (typeof want === "string") refuse(g, key, want);
      if (want !== a) refuse(g, key, `it moves T from axis ${String(a)} to axis ${String(want)}`);
      axis.set(key, a);
    }
  } catch (e) {
    if (e instanceof Refused) return { ok: false, reason: e.reason };
    throw e;
  }
  const capacity = g.bounds.get(t)?.max;
  if (cached.length > 0 && capacity === undefined)
    return { ok: false, reason: `${t} has no bound to size the KV cache with` };
  return { ok: true, cached, capacity };
}

function refuse(g: Graph, key: string, why: string): never {
  const n = nodeData(g, key);
  throw new Refused(`%${key}${n.loc ? ` (${n.loc})` : ""}: ${n.op}: ${why}`);
}

/** The T axis of a step node's value, from its operands'. */
function stepAxis(
  g: Graph,
  key: string,
  t: string,
  axis: ReadonlyMap<string, number | undefined>,
  cached: string[],
): number | undefined {
  const n = nodeData(g, key);
  const ins = operands(g, key);
  const ax = (k: string) => axis.get(k);
  const rank = n.type.shape.length;
  const no = (why: string): never => refuse(g, key, why);
  // Operands combined elementwise: their T axes must meet on one axis of the result.
  const aligned = (ks: readonly string[]): number | undefined => {
    let at: number | undefined;
    for (const k of ks) {
      const a = ax(k);
      if (a === undefined) continue;
      const out = a + rank - nodeData(g, k).type.shape.length;
      if (at !== undefined && at !== out) no("it combines positions from different axes");
      at = out;
    }
    return at;
  };
  const along = (a: number | undefined, across: number, what: string): number | undefined =>
    a === across ? no(`it ${what} along T, which mixes positions`) : a;
  const fixed = (ks: readonly string[], what: string): void => {
    for (const k of ks) if (ax(k) !== undefined) no(`its ${what} varies with position`);
  };
  switch (n.op) {
    case "param":
      return undefined;
    case "input":
    case "const":
    case "range": {
      if (n.op === "range" && dimSymbols(String(n.attrs.start)).includes(t))
        no("it starts at a position that depends on T");
      const a = shapeAxis(n.type.shape, t);
      return typeof a === "string" ? no(a) : a;
    }
    case "add":
    case "sub":
    case "mul":
    case "div":
    case "neg":
    case "exp":
    case "sqrt":
    case "rsqrt":
    case "tanh":
    case "relu":
    case "gelu":
    case "gelu_tanh":
    case "map":
    case "masked_fill":
      return aligned(ins);
    case "sinusoidal":
      return ax(ins[0]);
    case "causal_mask": {
      const a = ax(ins[0]);
      return a !== undefined && a >= rank - 2 ? no("a causal mask over T mixes positions") : a;
    }
    case "softmax":
      return along(ax(ins[0]), n.attrs.axis, "normalizes");
    case "scale_softmax": {
      const a = along(aligned(ins), rank - 1, "normalizes");
      return n.attrs.causal ? along(a, rank - 2, "masks causally") : a;
    }
    case "layer_norm":
      fixed(ins.slice(1), "weight or bias");
      return along(ax(ins[0]), rank - 1, "normalizes");
    case "layer_norm_map":
      fixed(ins.slice(0, 2), "weight or bias");
      return along(aligned(ins.slice(2)), rank - 1, "normalizes");
    case "reduce_sum":
    case "reduce_mean":
      return along(ax(ins[0]), n.attrs.axis, "reduces");
    case "slice": {
      // The last position (start −1, size 1): a step's last new position is the last of all.
      const { axis: at, start, size } = n.attrs;
      if (ax(ins[0]) === at && start === -1 && size === 1) return undefined;
      return along(ax(ins[0]), at, "slices");
    }
    case "concat":
      return along(aligned(ins), n.attrs.axis, "concatenates");
    case "matmul":
    case "matmul_epilogue": {
      const [a, b, ...extras] = ins;
      const [ra, rb] = [a, b].map((k) => nodeData(g, k).type.shape.length);
      const [xa, xb] = [ax(a), ax(b)];
      const kb = n.attrs.transposeB ? rb - 1 : rb - 2;
      if (xa === ra - 1 || xb === kb) no("it contracts along T, which mixes positions");
      const fromA = xa === undefined ? undefined : xa === ra - 2 ? rank - 2 : xa + rank - ra;
      const fromB = xb === undefined ? undefined : xb >= rb - 2 ? rank - 1 : xb + rank - rb;
      if (fromA !== undefined && fromB !== undefined && fromA !== fromB)
        no("it pairs every position with every other");
      const out = fromA ?? fromB;
      const e = aligned(extras);
      if (out !== undefined && e !== undefined && out !== e)
        no("it combines positions from different axes");
      return out ?? e;
    }
    case "transpose": {
      const a = ax(ins[0]);
      if (a === undefined) return undefined;
      const j = n.attrs.perm.indexOf(a);
      return j === a ? a : no(`it moves T from axis ${a} to axis ${j}`);
    }
    case "reshape": {
      const a = ax(ins[0]);
      const b = shapeAxis(n.type.shape, t);
      if (a === undefined || typeof b !== "number") return a;
      const before = nodeData(g, ins[0]).type.shape.slice(0, a);
      return symEq(symProduct(before), symProduct(n.type.shape.slice(0, b))) ? b : no("it moves T");
    }
    case "gather":
      fixed(ins.slice(0, 1), "table");
      return ax(ins[1]);
    case "attention": {
      const [q, k, v, m] = ins.map(ax);
      if (k === undefined && v === undefined) {
        if (m !== undefined) no("its key mask varies with position");
        return q;
      }
      if (q !== 0 || k !== 0 || v !== 0) no("its keys and values run over T but not its queries");
      if (!n.attrs.causal)
        no("a non-causal self-attention: a new position would change earlier ones");
      if (ins.length > 3) no("a self-attention with a key mask (the cache keeps no mask)");
      cached.push(key);
      return 0;
    }
    default:
      return assertNever(n, "op");
  }
}
