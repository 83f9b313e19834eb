/** The float64 reference interpreter: runs any graph, node by node, with each op's reference
 *  semantics. It is slow and exact, and it is the oracle every optimized or generated path is
 *  tested against. Symbolic dims are bound from the shapes of the fed inputs. */
import { KilnError, fail } from "../errors.ts";
import { nodeData, operands, topoOrder, type Graph } from "./graph.ts";
import type { NDArray } from "./ndarray.ts";
import { OPS, type EvalContext, type OpDecl, type OpName } from "./ops.ts";
import { GatherIndexError } from "./ops-structural.ts";
import { evalDim, formatShape, type Bindings } from "./shape.ts";

export interface Feeds {
  /** Graph inputs by input name. */
  readonly inputs: ReadonlyMap<string, NDArray>;
  /** Weights by param name (the checkpoint's tensor name). */
  readonly param: (name: string) => NDArray | undefined;
}

/** Binds each symbolic dim of the graph's inputs from the fed shapes, checking bounds. */
export function bindDims(g: Graph, inputs: ReadonlyMap<string, NDArray>): Bindings {
  const b = new Map<string, number>();
  for (const k of g.inputs) {
    const n = nodeData(g, k);
    const name = n.op === "input" ? n.attrs.name : k;
    const fed = inputs.get(name);
    if (!fed)
      fail(
        "input",
        `input "${name}"`,
        `not given (expects ${n.type.dtype}${formatShape(n.type.shape)})`,
      );
    const decl = n.type.shape;
    if (fed.shape.length !== decl.length)
      fail(
        "input",
        `input "${name}"`,
        `expects rank ${decl.length} ${formatShape(decl)}, got [${fed.shape}]`,
      );
    decl.forEach((d, i) => {
      const got = fed.shape[i];
      if (typeof d === "string" && /^[A-Za-z_]\w*$/.test(d) && !b.has(d)) {
        const bound = g.bounds.get(d);
        if (bound && got > bound.max)
          fail(
            "input",
            `input "${name}"`,
            `length ${got} exceeds ${bound.why} (${d} ≤ ${bound.max})`,
          );
        b.set(d, got);
      }
      const want = evalDim(d, b);
      if (want !== got)
        fail(
          "input",
          `input "${name}"`,
          `expects ${formatShape(decl)}, got [${fed.shape}] (dim ${i})`,
        );
    });
  }
  return b;
}

function resolve(g: Graph, key: string, b: Bindings): number[] {
  return nodeData(g, key).type.shape.map((d) => {
    const v = evalDim(d, b);
    if (v === undefined) fail("ir", `@${g.name} %${key}`, `dim ${d} is not bound by any input`);
    return v;
  });
}

/** Runs the graph; returns its outputs in order. */
export function interpret(g: Graph, feeds: Feeds): NDArray[] {
  const bindings = bindDims(g, feeds.inputs);
  const order = topoOrder(g);
  const values = new Map<string, NDArray>();
  const pending = new Map<string, number>();
  order.forEach((k) => pending.set(k, g.nodes.outDegree(k)));
  const keep = new Set(g.outputs);
  for (const key of order) {
    const n = nodeData(g, key);
    const where = `@${g.name} %${key}${n.loc ? ` (${n.loc})` : ""}`;
    const out = resolve(g, key, bindings);
    const ctx: EvalContext = {
      node: key,
      bindings,
      input: (name) => feeds.inputs.get(name)!,
      param: (name) => {
        const p = feeds.param(name);
        if (!p) fail("checkpoint", `tensor "${name}"`, "missing");
        if (p.shape.length !== out.length || p.shape.some((d, i) => d !== out[i]))
          fail("checkpoint", `tensor "${name}"`, `shape [${p.shape}] but the model needs [${out}]`);
        return p;
      },
    };
    const ins = operands(g, key).map((k) => values.get(k)!);
    let v: NDArray;
    try {
      v = (OPS[n.op] as OpDecl<OpName>).eval(n.attrs, ins, out, ctx);
    } catch (e) {
      if (e instanceof KilnError) throw e;
      if (e instanceof GatherIndexError)
        fail("input", where, `gather: index ${e.index} is outside the table's ${e.rows} rows`);
      // An eval's run-time check on bound sizes (a slice past a symbolic axis's length).
      if (e instanceof RangeError) fail("input", where, e.message);
      throw e;
    }
    values.set(key, v);
    for (const k of operands(g, key)) {
      const left = pending.get(k)! - 1;
      pending.set(k, left);
      if (left === 0 && !keep.has(k)) values.delete(k);
    }
  }
  return g.outputs.map((k) => values.get(k)!);
}
