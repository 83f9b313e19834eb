/** The graph: graphology holds it. A node is one op producing one value; its key is the value's
 *  name in text IR (without `%`). An edge runs operand → user and carries the operand slot.
 *  Graphs are treated as values: a pass builds a new graph rather than editing its input. */
import { MultiDirectedGraph } from "graphology";
import type { Attrs, OpName } from "./ops.ts";
import type { Dim, TensorType } from "./shape.ts";

/** A node's data; `op` and `attrs` vary together. */
export type OpNode = { [O in OpName]: { readonly op: O; readonly attrs: Attrs[O] } }[OpName];

export type NodeData = OpNode & {
  readonly type: TensorType;
  /** Where the value was made: the DSL call site (`models/gpt2.ts:42`) or a parsed IR line. */
  readonly loc?: string;
  /** The pass that made this node, shown as a comment in text IR. */
  readonly origin?: string;
  /** For a node a fusion made: the keys of the original (unfused) nodes it computes. */
  readonly covers?: readonly string[];
};

export interface EdgeData {
  readonly slot: number;
}

export type NodeStore = MultiDirectedGraph<NodeData, EdgeData>;

/** An upper bound on a symbolic dim, checked when the dim is bound (e.g. T ≤ n_positions). */
export interface DimBound {
  readonly max: number;
  /** What the bound is, in the user's words: "the context length n_positions". */
  readonly why: string;
}

export interface Graph {
  readonly name: string;
  readonly nodes: NodeStore;
  /** Input node keys in signature order. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly bounds: ReadonlyMap<string, DimBound>;
}

export function newNodeStore(): NodeStore {
  return new MultiDirectedGraph<NodeData, EdgeData>({ allowSelfLoops: false });
}

export function nodeData(g: Graph, key: string): NodeData {
  return g.nodes.getNodeAttributes(key);
}

/** Operand keys of a node, in slot order. */
export function operands(g: Graph, key: string): string[] {
  const ins: [number, string][] = [];
  g.nodes.forEachInEdge(key, (_e, attr, source) => ins.push([attr.slot, source]));
  return ins.sort((a, b) => a[0] - b[0]).map(([, s]) => s);
}

/** Distinct users of a node's value. */
export function users(g: Graph, key: string): string[] {
  return g.nodes.outNeighbors(key);
}

/** Deterministic topological order: Kahn's algorithm, ties broken by insertion order. */
export function topoOrder(g: Graph): string[] {
  const order: string[] = [];
  const indeg = new Map<string, number>();
  const rank = new Map<string, number>();
  g.nodes.forEachNode((k) => {
    rank.set(k, rank.size);
    indeg.set(k, g.nodes.inDegree(k));
  });
  const ready = g.nodes.filterNodes((k) => indeg.get(k) === 0);
  while (ready.length > 0) {
    ready.sort((a, b) => rank.get(a)! - rank.get(b)!);
    const k = ready.shift()!;
    order.push(k);
    g.nodes.forEachOutEdge(k, (_e, _a, _s, t) => {
      const d = indeg.get(t)! - 1;
      indeg.set(t, d);
      if (d === 0) ready.push(t);
    });
  }
  if (order.length !== g.nodes.order) throw new Error(`graph @${g.name} has a cycle`);
  return order;
}

/** Appends a node; operands must exist. */
export function addNode(
  store: NodeStore,
  key: string,
  data: NodeData,
  ins: readonly string[],
): void {
  store.addNode(key, data);
  ins.forEach((src, slot) => store.addEdge(src, key, { slot }));
}

export function dimsOf(t: TensorType): readonly Dim[] {
  return t.shape;
}
