/** Editing a graph inside a pass. A pass drafts a copy of its input, edits the draft in place, and
 *  returns the frozen result; the input graph is never touched. */
import {
  addNode,
  nodeData,
  operands,
  topoOrder,
  type DimBound,
  type Graph,
  type NodeData,
  type NodeStore,
} from "../ir/graph.ts";

export interface Draft {
  readonly name: string;
  readonly nodes: NodeStore;
  readonly inputs: readonly string[];
  outputs: string[];
  readonly bounds: ReadonlyMap<string, DimBound>;
}

export function draft(g: Graph): Draft {
  return {
    name: g.name,
    nodes: g.nodes.copy(),
    inputs: [...g.inputs],
    outputs: [...g.outputs],
    bounds: g.bounds,
  };
}

export function freeze(d: Draft): Graph {
  return {
    name: d.name,
    nodes: d.nodes,
    inputs: d.inputs,
    outputs: [...d.outputs],
    bounds: d.bounds,
  };
}

/** A draft is a graph for reading (operands, users, nodeData, topoOrder all take it). */
export const asGraph = (d: Draft): Graph => d;

/** `%key` plus the DSL line that made it, for messages. */
export function describe(g: Graph, key: string): string {
  const loc = nodeData(g, key).loc;
  return `%${key}${loc ? ` (${loc})` : ""}`;
}

function freshKey(d: Draft, hint: string): string {
  if (!d.nodes.hasNode(hint)) return hint;
  for (let i = 1; ; i++) if (!d.nodes.hasNode(`${hint}_${i}`)) return `${hint}_${i}`;
}

/** Adds a node; returns its key (the hint, made unique). */
export function insert(d: Draft, hint: string, data: NodeData, ins: readonly string[]): string {
  const key = freshKey(d, hint);
  addNode(d.nodes, key, data, ins);
  return key;
}

/** Points every use of `from` (and the graph outputs) at `to`, keeping operand slots. */
export function replaceUses(d: Draft, from: string, to: string): void {
  if (from === to) return;
  const edges = d.nodes
    .outEdges(from)
    .map((e) => [d.nodes.target(e), d.nodes.getEdgeAttributes(e).slot, e] as const);
  for (const [target, slot, e] of edges) {
    d.nodes.dropEdge(e);
    d.nodes.addEdge(to, target, { slot });
  }
  d.outputs = d.outputs.map((o) => (o === from ? to : o));
}

/** The original nodes a node stands for: its `covers`, or itself. */
export function coversOf(g: Graph, key: string): readonly string[] {
  return nodeData(g, key).covers ?? [key];
}

/** Removes nodes nothing needs: not an output, an input, nor an operand of a needed node. */
export function removeDead(d: Draft): number {
  const live = new Set<string>([...d.outputs, ...d.inputs]);
  const stack = [...d.outputs];
  while (stack.length) {
    const k = stack.pop()!;
    for (const o of operands(d, k))
      if (!live.has(o)) {
        live.add(o);
        stack.push(o);
      }
  }
  let removed = 0;
  for (const k of topoOrder(d))
    if (!live.has(k)) {
      d.nodes.dropNode(k);
      removed++;
    }
  return removed;
}

/** Rebuilds node `key` in place as a new op over `ins`: its users and its name stay. */
export function replaceNode(d: Draft, key: string, data: NodeData, ins: readonly string[]): void {
  for (const e of d.nodes.inEdges(key)) d.nodes.dropEdge(e);
  d.nodes.replaceNodeAttributes(key, data);
  ins.forEach((src, slot) => d.nodes.addEdge(src, key, { slot }));
}

/** Drops those of `keys` a rewrite left without users (not outputs or inputs), then whatever
 *  only they used; returns how many nodes went. Unlike removeDead, other dead code stays. */
export function dropUnused(d: Draft, keys: Iterable<string>): number {
  const stack = [...keys];
  let dropped = 0;
  while (stack.length) {
    const k = stack.pop()!;
    if (!d.nodes.hasNode(k) || d.nodes.outDegree(k) > 0) continue;
    if (d.outputs.includes(k) || d.inputs.includes(k)) continue;
    stack.push(...operands(d, k));
    d.nodes.dropNode(k);
    dropped++;
  }
  return dropped;
}
