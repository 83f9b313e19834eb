/** Text IR printer: one line per value, the type on the right, the making pass and (optionally)
 *  the DSL source line in a trailing comment. `parse` reads this format back exactly. */
import { nodeData, operands, topoOrder, type Graph, type NodeData } from "./graph.ts";
import { OPS, type AttrKind, type OpDecl, type OpName } from "./ops.ts";
import { formatShape, formatType, type Dim } from "./shape.ts";
import { formatNumber } from "./format-number.ts";
import { formatExpr, type Expr } from "./expr.ts";

export { formatNumber };

export interface PrintOptions {
  /** Append `@ file:line` of the DSL call that made each node. */
  readonly locations?: boolean;
}

/** A string as a JSON literal, with the JS line separators escaped too. */
export function quote(s: string): string {
  return JSON.stringify(s)
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

function formatAttr(kind: AttrKind, v: unknown): string {
  switch (kind) {
    case "int":
    case "float":
      return formatNumber(v as number);
    case "bool":
      return String(v);
    case "string":
      return quote(v as string);
    case "dim":
      return String(v as Dim);
    case "ints":
      return `[${(v as readonly number[]).join(",")}]`;
    case "dims":
      return formatShape(v as readonly Dim[]);
    case "expr":
      return quote(formatExpr(v as Expr));
  }
}

export function formatAttrs(n: NodeData): string {
  const schema = (OPS[n.op] as OpDecl<OpName>).attrs as Readonly<Record<string, AttrKind>>;
  const attrs = n.attrs as Readonly<Record<string, unknown>>;
  const parts = Object.entries(schema).map(([k, kind]) => `${k}=${formatAttr(kind, attrs[k])}`);
  return parts.length ? ` {${parts.join(", ")}}` : "";
}

function comment(n: NodeData, opts: PrintOptions): string {
  const parts: string[] = [];
  if (n.origin) parts.push(n.origin);
  if (opts.locations && n.loc) parts.push(`@ ${n.loc}`);
  return parts.length ? `  # ${parts.join(" ")}` : "";
}

export function printGraph(g: Graph, opts: PrintOptions = {}): string {
  const sig = g.inputs.map((k) => `%${k}: ${formatType(nodeData(g, k).type)}`).join(", ");
  const outs = g.outputs.map((k) => formatType(nodeData(g, k).type)).join(", ");
  const lines = [`graph @${g.name}(${sig}) -> (${outs}) {`];
  for (const [sym, b] of g.bounds) lines.push(`  dim ${sym} <= ${b.max} ${quote(b.why)}`);
  const body: [string, string, string][] = [];
  for (const k of topoOrder(g)) {
    const n = nodeData(g, k);
    if (n.op === "input") continue;
    const args = operands(g, k)
      .map((o) => `%${o}`)
      .join(", ");
    body.push([
      `  %${k} = ${n.op}(${args})${formatAttrs(n)}`,
      formatType(n.type),
      comment(n, opts),
    ]);
  }
  const width = Math.min(72, Math.max(0, ...body.map(([l]) => l.length)));
  for (const [l, t, c] of body) lines.push(`${l.padEnd(width)} : ${t}${c}`);
  lines.push(`  return ${g.outputs.map((k) => `%${k}`).join(", ")}`, "}");
  return lines.join("\n") + "\n";
}
