/** simplify — algebraic identities, written as a table of rules.
 *  Each rule matches one op at the root and names what replaces it: an existing value (the node
 *  goes away) or a new node (built in place, keeping the root's name and users). A rule fires only
 *  when the replacement has exactly the root's type: `x × 1` is x only if the 1 does not
 *  broadcast x to a bigger shape. Rules are applied in topological order and swept again until
 *  none fires, so chains (three transposes, reshapes of reshapes) collapse in one run. Nodes left
 *  without users are dropped. Preconditions: none; run after fold-constants, so that a `1` or `0`
 *  computed from constants is a `const` here. */
import { nodeData, operands, topoOrder, type Graph, type NodeData } from "../ir/graph.ts";
import { inferType } from "../ir/infer.ts";
import type { Attrs, OpName } from "../ir/ops.ts";
import { shapeEq, type TensorType } from "../ir/shape.ts";
import type { Pass } from "./pass.ts";
import {
  asGraph,
  coversOf,
  draft,
  dropUnused,
  freeze,
  replaceNode,
  replaceUses,
} from "./rewrite.ts";

/** The root node a rule looks at: its attributes, type and operands. */
interface Root<O extends OpName> {
  readonly g: Graph;
  readonly key: string;
  readonly attrs: Attrs[O];
  readonly type: TensorType;
  readonly ins: readonly string[];
}

/** What replaces the root: an existing value, or a new op over existing values (which absorbs
 *  the nodes named in `absorbs` besides the root). */
type Replacement =
  | string
  | {
      readonly op: OpName;
      readonly attrs: Attrs[OpName];
      readonly ins: readonly string[];
      readonly absorbs: readonly string[];
    };

interface Rule<O extends OpName> {
  readonly name: string;
  readonly match: O;
  /** The replacement, or undefined when the rule's condition does not hold. */
  readonly rewrite: (r: Root<O>) => Replacement | undefined;
}

type AnyRule = { [O in OpName]: Rule<O> }[OpName];

const rule = <O extends OpName>(r: Rule<O>): AnyRule => r as unknown as AnyRule;

const data = (g: Graph, k: string): NodeData => nodeData(g, k);

const sameType = (a: TensorType, b: TensorType): boolean =>
  a.dtype === b.dtype && shapeEq(a.shape, b.shape);

/** Operand `i` of the root when it is a const with value v (−0 counts as 0). */
const isConst = (r: Root<OpName>, i: number, v: number): boolean => {
  const n = data(r.g, r.ins[i]);
  return n.op === "const" && n.attrs.value === v;
};

/** Operand `i` when it can stand for the root: its type is the root's. */
const keep = (r: Root<OpName>, i: number): string | undefined =>
  sameType(data(r.g, r.ins[i]).type, r.type) ? r.ins[i] : undefined;

const isIdentity = (perm: readonly number[]): boolean => perm.every((p, i) => p === i);

export const RULES: readonly AnyRule[] = [
  // transpose(transpose(x, p), q) ⇒ transpose(x, p∘q), or x when p∘q is the identity
  rule({
    name: "transpose-transpose",
    match: "transpose",
    rewrite: (r) => {
      const inner = data(r.g, r.ins[0]);
      if (inner.op !== "transpose") return undefined;
      const x = operands(r.g, r.ins[0])[0];
      const perm = r.attrs.perm.map((q) => inner.attrs.perm[q]);
      if (isIdentity(perm)) return x;
      return { op: "transpose", attrs: { perm }, ins: [x], absorbs: [r.ins[0]] };
    },
  }),
  // transpose(x, identity) ⇒ x
  rule({
    name: "transpose-identity",
    match: "transpose",
    rewrite: (r) => (isIdentity(r.attrs.perm) ? r.ins[0] : undefined),
  }),
  // reshape(reshape(x, s), t) ⇒ reshape(x, t), or x when x already has shape t
  rule({
    name: "reshape-reshape",
    match: "reshape",
    rewrite: (r) => {
      if (data(r.g, r.ins[0]).op !== "reshape") return undefined;
      const x = operands(r.g, r.ins[0])[0];
      if (sameType(data(r.g, x).type, r.type)) return x;
      return { op: "reshape", attrs: { shape: r.attrs.shape }, ins: [x], absorbs: [r.ins[0]] };
    },
  }),
  // reshape(x, shape of x) ⇒ x
  rule({ name: "reshape-same", match: "reshape", rewrite: (r) => keep(r, 0) }),
  // slice(x) over the whole axis ⇒ x
  rule({
    name: "slice-whole",
    match: "slice",
    rewrite: (r) => (r.attrs.start === 0 ? keep(r, 0) : undefined),
  }),
  // x × 1 ⇒ x
  rule({
    name: "mul-one",
    match: "mul",
    rewrite: (r) => (isConst(r, 1, 1) ? keep(r, 0) : undefined),
  }),
  // 1 × x ⇒ x
  rule({
    name: "one-mul",
    match: "mul",
    rewrite: (r) => (isConst(r, 0, 1) ? keep(r, 1) : undefined),
  }),
  // x + 0 ⇒ x (x = −0 gives +0 before and −0 after: equal numbers)
  rule({
    name: "add-zero",
    match: "add",
    rewrite: (r) => (isConst(r, 1, 0) ? keep(r, 0) : undefined),
  }),
  // 0 + x ⇒ x
  rule({
    name: "zero-add",
    match: "add",
    rewrite: (r) => (isConst(r, 0, 0) ? keep(r, 1) : undefined),
  }),
  // x − 0 ⇒ x
  rule({
    name: "sub-zero",
    match: "sub",
    rewrite: (r) => (isConst(r, 1, 0) ? keep(r, 0) : undefined),
  }),
  // x / 1 ⇒ x
  rule({
    name: "div-one",
    match: "div",
    rewrite: (r) => (isConst(r, 1, 1) ? keep(r, 0) : undefined),
  }),
  // −(−x) ⇒ x
  rule({
    name: "neg-neg",
    match: "neg",
    rewrite: (r) => (data(r.g, r.ins[0]).op === "neg" ? operands(r.g, r.ins[0])[0] : undefined),
  }),
];

const RULES_BY_OP = new Map<OpName, AnyRule[]>();
for (const r of RULES) RULES_BY_OP.set(r.match, [...(RULES_BY_OP.get(r.match) ?? []), r]);

function tryRules(g: Graph, key: string): [AnyRule, Replacement] | undefined {
  const n = data(g, key);
  const root: Root<OpName> = { g, key, attrs: n.attrs, type: n.type, ins: operands(g, key) };
  for (const r of RULES_BY_OP.get(n.op) ?? []) {
    const out = (r.rewrite as (r: Root<OpName>) => Replacement | undefined)(root);
    if (out !== undefined) return [r, out];
  }
  return undefined;
}

/** simplify, also saying how many times each rule fired (by rule name). */
export function simplifyCounts(g: Graph): { graph: Graph; counts: Map<string, number> } {
  const d = draft(g);
  const dg = asGraph(d);
  const counts = new Map<string, number>();
  const replaced: string[] = [];
  for (let changed = true; changed;) {
    changed = false;
    for (const key of topoOrder(dg)) {
      if (!d.nodes.hasNode(key)) continue;
      const hit = tryRules(dg, key);
      if (!hit) continue;
      const [r, out] = hit;
      const n = data(dg, key);
      if (typeof out === "string") {
        replaceUses(d, key, out);
      } else {
        const type = inferType(
          out.op,
          out.attrs,
          out.ins.map((k) => data(dg, k).type),
        );
        // A rule's new node must compute the root's type; one that doesn't is a bug in the rule.
        if (typeof type === "string" || !sameType(type, n.type))
          throw new Error(`simplify: rule ${r.name} changed the type of %${key}`);
        const covers = new Set(
          [coversOf(dg, key), ...out.absorbs.map((k) => coversOf(dg, k))].flat(),
        );
        replaceNode(
          d,
          key,
          {
            op: out.op,
            attrs: out.attrs,
            type: n.type,
            ...(n.loc !== undefined ? { loc: n.loc } : {}),
            origin: "simplify",
            covers: [...covers],
          } as NodeData,
          out.ins,
        );
        replaced.push(...out.absorbs);
      }
      replaced.push(key);
      counts.set(r.name, (counts.get(r.name) ?? 0) + 1);
      changed = true;
    }
    dropUnused(d, replaced.splice(0));
  }
  return { graph: freeze(d), counts };
}

export const simplify: Pass = {
  name: "simplify",
  run: (g) => {
    const { graph, counts } = simplifyCounts(g);
    const rewrites = [...counts.values()].reduce((a, b) => a + b, 0);
    return { graph, rewrites, notFused: [] };
  },
};
