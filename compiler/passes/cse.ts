/** cse — common-subexpression elimination.
 *  Rule: two nodes with the same op, equal attributes (deep equality, expression attributes
 *  included), the same type and the same operands in the same slots compute the same value; the
 *  later one (in topological order) is replaced by the first. Every op is pure, so this holds for
 *  all of them — consts with the same value and type, params with the same name, ranges — except
 *  `input`: two inputs are two values fed by the caller, never merged.
 *  Nodes are visited in topological order with their operands already merged, so users made
 *  identical by a merge are merged in the same run (the result is a fixed point).
 *  The kept node's `covers` gains the merged node's, so every original node stays accounted for.
 *  Numbers compare by identity: 0 and −0 differ (1/x tells them apart), NaN equals NaN. */
import { nodeData, operands, topoOrder } from "../ir/graph.ts";
import { formatType } from "../ir/shape.ts";
import type { Pass } from "./pass.ts";
import { asGraph, coversOf, draft, freeze, replaceUses } from "./rewrite.ts";

/** A canonical text for attribute values: object keys sorted, numbers by identity. */
export function canonical(v: unknown): string {
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    const o = v as Readonly<Record<string, unknown>>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(",")}}`;
  }
  return String(v);
}

export const cse: Pass = {
  name: "cse",
  run: (g) => {
    const d = draft(g);
    const dg = asGraph(d);
    const seen = new Map<string, string>();
    let rewrites = 0;
    for (const key of topoOrder(g)) {
      const n = nodeData(dg, key);
      if (n.op === "input") continue;
      const sig = [n.op, canonical(n.attrs), formatType(n.type), ...operands(dg, key)].join(
        "\u0000",
      );
      const first = seen.get(sig);
      if (first === undefined) {
        seen.set(sig, key);
        continue;
      }
      const covers = new Set([...coversOf(dg, first), ...coversOf(dg, key)]);
      d.nodes.mergeNodeAttributes(first, { covers: [...covers] });
      replaceUses(d, key, first);
      d.nodes.dropNode(key);
      rewrites++;
    }
    return { graph: freeze(d), rewrites, notFused: [] };
  },
};
