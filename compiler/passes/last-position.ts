/** last-position — every graph output with the sequence dim T keeps only its last position, and
 *  the work before it narrows with it as far as that work treats positions one by one:
 *
 *    logits = matmul(layer_norm(x), W)  : [T,V]   ⇒   logits = matmul(layer_norm(x'), W) : [1,V]
 *                                                     x'     = slice(x) {axis=0, start=-1, size=1}
 *
 *  Rule: a value is needed at its last position only when every use is: a graph output with T,
 *  or the T-carrying operand of a row-wise node needed so. A row-wise node computes position t of
 *  its result from position t of its operands alone, T on one axis of each (the same axis after
 *  broadcasting): elementwise ops and maps; layer norm, softmax (not causal) and reductions over
 *  another axis; a matmul or matmul_epilogue whose rows are the positions and whose b has no T; a
 *  gather of position ids; sinusoidal; a transpose, slice or concat that leaves T's axis alone;
 *  an attention whose keys and values do not run over T (a cross-attention: one query row each).
 *  Such a node, needed last, is rebuilt in place (same name) over its operands' last positions.
 *  Any other value needed last (an input, a range, a causal self-attention, a reshape, …) is
 *  computed whole and read through a new `slice {start=-1, size=1}` along T, and so is a value
 *  that some other use needs whole (the residual stream that also feeds the next block).
 *
 *  Not in the default pipeline: it changes what the graph returns (logits [1,V], not [T,V]). The
 *  runners append it for decoding (runtime/runner.ts), where only the last logits are sampled;
 *  it runs on fused or unfused graphs alike. Dead nodes are removed first (they would read a
 *  narrowed value at its old type). A graph with no output over T is left unchanged. */
import { assertNever, fail } from "../errors.ts";
import { nodeData, operands, topoOrder, type Graph } from "../ir/graph.ts";
import { inferType } from "../ir/infer.ts";
import { dimSymbols, type Shape, type TensorType } from "../ir/shape.ts";
import type { Pass } from "./pass.ts";
import {
  asGraph,
  describe,
  draft,
  freeze,
  insert,
  removeDead,
  replaceNode,
  type Draft,
} from "./rewrite.ts";

const NAME = "last-position";
/** The sequence dim, as the KV cache knows it (compiler/lower/program.ts's STEP_SYMBOL). */
const SEQ = "T";

/** T's axis: a number, undefined when the shape has no T, null when T is not alone on one axis. */
export function seqAxis(shape: Shape): number | undefined | null {
  let at: number | undefined;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== "string" || !dimSymbols(d).includes(SEQ)) continue;
    if (d !== SEQ || at !== undefined) return null;
    at = i;
  }
  return at;
}

/** For a row-wise node: which operands carry T (and so are narrowed with it); otherwise
 *  undefined. */
function rowWise(g: Graph, key: string): boolean[] | undefined {
  const n = nodeData(g, key);
  const ins = operands(g, key).map((k) => nodeData(g, k).type.shape);
  const rank = n.type.shape.length;
  const r = seqAxis(n.type.shape);
  if (r === undefined || r === null) return undefined;
  const found = ins.map(seqAxis);
  const axes = found.filter((a): a is number | undefined => a !== null);
  if (axes.length < found.length) return undefined;
  const carries = axes.map((a) => a !== undefined);
  /** Operands `from` on combine with the result elementwise: T where the result has it. */
  const aligned = (from = 0): boolean =>
    axes.every((a, i) => i < from || a === undefined || a + rank - ins[i].length === r);
  const noT = (slots: readonly number[]): boolean => slots.every((i) => axes[i] === undefined);
  const ok = (cond: boolean) => (cond ? carries : undefined);
  switch (n.op) {
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
      return ok(aligned());
    case "layer_norm":
      return ok(r !== rank - 1 && axes[0] === r && noT([1, 2]));
    case "layer_norm_map":
      return ok(r !== rank - 1 && noT([0, 1]) && aligned(2));
    case "softmax":
    case "reduce_sum":
    case "reduce_mean":
      return ok(r !== n.attrs.axis && axes[0] === r);
    case "scale_softmax":
      return ok(!n.attrs.causal && r !== rank - 1 && aligned());
    case "matmul":
    case "matmul_epilogue":
      return ok(r === rank - 2 && axes[0] === ins[0].length - 2 && noT([1]) && aligned(2));
    case "gather":
      return ok(noT([0]) && axes[1] === r);
    case "sinusoidal":
      return ok(axes[0] === r);
    case "transpose":
      return ok(n.attrs.perm[r] === axes[0]);
    case "slice":
    case "concat":
      return ok(r !== n.attrs.axis && aligned());
    case "attention":
      return ok(r === 0 && axes[0] === 0 && noT([1, 2, 3]));
    case "input":
    case "param":
    case "const":
    case "range":
    case "reshape":
    case "causal_mask":
      return undefined;
    default:
      return assertNever(n, "op");
  }
}

type Need = "last" | "whole";

const overT = (g: Graph, k: string): boolean =>
  typeof seqAxis(nodeData(g, k).type.shape) === "number";

/** The nodes to narrow, each with its T-carrying operands: the row-wise nodes whose every use
 *  needs only their last position, found from the outputs back. */
function plan(g: Graph, order: readonly string[]): Map<string, boolean[]> {
  const need = new Map<string, Need>();
  const want = (k: string, w: Need) => need.set(k, need.get(k) === "whole" ? "whole" : w);
  for (const o of g.outputs) want(o, overT(g, o) ? "last" : "whole");
  const narrow = new Map<string, boolean[]>();
  for (const k of [...order].reverse()) {
    const nk = need.get(k);
    if (nk === undefined) continue;
    const rows = nk === "last" ? rowWise(g, k) : undefined;
    if (rows) narrow.set(k, rows);
    operands(g, k).forEach((o, i) => want(o, rows?.[i] ? "last" : "whole"));
  }
  return narrow;
}

export const lastPosition: Pass = {
  name: NAME,
  run: (g) => {
    // Dead nodes go first: they would keep reading a narrowed value at its old type.
    const d = draft(g);
    const dg = asGraph(d);
    let rewrites = removeDead(d);
    const order = topoOrder(dg);
    const narrowing = plan(dg, order);
    const outputs = d.outputs.map((o) => [o, overT(dg, o)] as const);
    const slices = new Map<string, string>();
    /** The last position of a value: itself once narrowed, else one slice of it. */
    const lastOf = (k: string): string => {
      if (narrowing.has(k)) return k;
      let s = slices.get(k);
      if (s === undefined) {
        const n = nodeData(dg, k);
        const attrs = { axis: seqAxis(n.type.shape) ?? -1, start: -1, size: 1 };
        const type = typed(dg, k, inferType("slice", attrs, [n.type]));
        s = insert(d, `${k}_last`, { op: "slice", attrs, type, origin: NAME, covers: [] }, [k]);
        slices.set(k, s);
        rewrites++;
      }
      return s;
    };
    // In order, so that a node's operands are narrowed (or sliced) before it is.
    for (const k of order) {
      const rows = narrowing.get(k);
      if (!rows) continue;
      narrow(
        d,
        k,
        operands(dg, k).map((o, i) => (rows[i] ? lastOf(o) : o)),
      );
      rewrites++;
    }
    d.outputs = outputs.map(([o, t]) => (t ? lastOf(o) : o));
    return { graph: freeze(d), rewrites, notFused: [] };
  },
};

/** Rebuilds row-wise node `k` in place over the narrowed operands `ins`, its type re-inferred. */
function narrow(d: Draft, k: string, ins: readonly string[]): void {
  const n = nodeData(asGraph(d), k);
  const types = ins.map((o) => nodeData(asGraph(d), o).type);
  const type = typed(asGraph(d), k, inferType(n.op, n.attrs, types));
  replaceNode(d, k, { ...n, type }, ins);
}

/** The inferred type; a type rule refusing the narrowed operands is a bug in rowWise. */
function typed(g: Graph, k: string, t: TensorType | string): TensorType {
  return typeof t === "string" ? fail("ir", describe(g, k), `${NAME}: ${t}`) : t;
}
