/** Type inference for one node: the op's type rule applied to its operands' types. */
import type { Graph, NodeData } from "./graph.ts";
import { nodeData, operands } from "./graph.ts";
import { OPS, arityOk, formatArity, type Attrs, type OpDecl, type OpName } from "./ops.ts";
import type { TensorType } from "./shape.ts";

/** Calls the op's type rule; `declared` is used by source ops (input, param, const). */
export function inferType(
  op: OpName,
  attrs: Attrs[OpName],
  ins: readonly TensorType[],
  declared?: TensorType,
): TensorType | string {
  const decl = OPS[op] as OpDecl<OpName>;
  if (!arityOk(decl, ins.length))
    return `takes ${formatArity(decl.arity)} operand(s), got ${ins.length}`;
  return decl.type(attrs, ins, declared);
}

export function inferNode(g: Graph, key: string): TensorType | string {
  const n: NodeData = nodeData(g, key);
  const ins = operands(g, key).map((k) => nodeData(g, k).type);
  return inferType(n.op, n.attrs, ins, n.type);
}
