/** The verifier, run after building and between passes: every node's op is known, its operand
 *  count and attributes match the op's declaration, its recorded type is what the type rule
 *  infers, the graph is acyclic, inputs are input nodes and outputs exist. */
import { fail } from "../errors.ts";
import { nodeData, operands, topoOrder, type Graph } from "./graph.ts";
import { inferNode } from "./infer.ts";
import { isExpr } from "./expr.ts";
import {
  OPS,
  arityOk,
  formatArity,
  isOpName,
  type AttrKind,
  type OpDecl,
  type OpName,
} from "./ops.ts";
import { formatType, isDim, shapeEq } from "./shape.ts";

export function checkAttr(kind: AttrKind, v: unknown): boolean {
  switch (kind) {
    case "int":
      return Number.isSafeInteger(v);
    case "float":
      return typeof v === "number";
    case "bool":
      return typeof v === "boolean";
    case "string":
      return typeof v === "string";
    case "dim":
      return isDim(v);
    case "ints":
      return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x));
    case "dims":
      return Array.isArray(v) && v.every(isDim);
    case "expr":
      return isExpr(v);
  }
}

/** Problems found, each naming the node; empty when the graph is well formed. */
export function problems(g: Graph): string[] {
  const out: string[] = [];
  const at = (k: string) => {
    const loc = g.nodes.hasNode(k) ? nodeData(g, k).loc : undefined;
    return `@${g.name} %${k}${loc ? ` (${loc})` : ""}`;
  };
  try {
    topoOrder(g);
  } catch {
    out.push(`@${g.name}: the graph has a cycle`);
    return out;
  }
  g.nodes.forEachNode((k, n) => {
    if (!isOpName(n.op)) return void out.push(`${at(k)}: unknown op ${String(n.op)}`);
    const decl = OPS[n.op] as OpDecl<OpName>;
    const slots = operands(g, k);
    if (!arityOk(decl, slots.length))
      out.push(
        `${at(k)}: ${n.op} takes ${formatArity(decl.arity)} operand(s), has ${slots.length}`,
      );
    const schema = decl.attrs as Readonly<Record<string, AttrKind>>;
    const attrs = n.attrs as Readonly<Record<string, unknown>>;
    let attrsOk = true;
    for (const [name, kind] of Object.entries(schema))
      if (!checkAttr(kind, attrs[name])) {
        attrsOk = false;
        out.push(`${at(k)}: ${n.op} attribute ${name} must be ${kind}`);
      }
    for (const name of Object.keys(attrs))
      if (!(name in schema)) out.push(`${at(k)}: ${n.op} has no attribute ${name}`);
    if (!n.type.shape.every(isDim)) out.push(`${at(k)}: bad shape in type ${formatType(n.type)}`);
    if (!arityOk(decl, slots.length) || !attrsOk) return; // the type rule may rely on both
    const t = inferNode(g, k);
    if (typeof t === "string") out.push(`${at(k)}: ${n.op}: ${t}`);
    else if (t.dtype !== n.type.dtype || !shapeEq(t.shape, n.type.shape))
      out.push(`${at(k)}: recorded type ${formatType(n.type)} but ${n.op} gives ${formatType(t)}`);
  });
  for (const k of g.inputs)
    if (!g.nodes.hasNode(k) || nodeData(g, k).op !== "input")
      out.push(`@${g.name}: input %${k} is not an input node`);
  g.nodes.forEachNode((k, n) => {
    if (n.op === "input" && !g.inputs.includes(k))
      out.push(`${at(k)}: input node missing from the signature`);
  });
  for (const k of g.outputs)
    if (!g.nodes.hasNode(k)) out.push(`@${g.name}: output %${k} does not exist`);
  if (g.outputs.length === 0) out.push(`@${g.name}: the graph has no outputs`);
  return out;
}

/** Throws a KilnError listing every problem. */
export function verify(g: Graph, after?: string): Graph {
  const p = problems(g);
  if (p.length > 0)
    fail(
      "ir",
      `@${g.name}`,
      `verification failed${after ? ` after ${after}` : ""}:\n  ${p.join("\n  ")}`,
    );
  return g;
}
