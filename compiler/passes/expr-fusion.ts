/** What the elementwise fusions share (fuse-matmul-epilogue, fuse-residual-layer-norm,
 *  fuse-elementwise): reading a group of elementwise nodes as one scalar expression over the
 *  values the group reads, and rebuilding a node in place around that expression.
 *
 *  Expressions are first written over temporary leaves (one per distinct value read), then
 *  renumbered: `$i` is the i-th distinct value in order of first appearance, reading the
 *  expression left to right, and the fused node's operands follow that order. A `const` of rank 0
 *  is written as a number instead of being read, unless nothing else would be left to read. */
import {
  binary,
  constant,
  formatExpr,
  input,
  isBinaryOp,
  isUnaryOp,
  substitute,
  unary,
  usesAcc,
  type Expr,
} from "../ir/expr.ts";
import { nodeData, operands, users, type Graph, type NodeData, type OpNode } from "../ir/graph.ts";
import { inferType } from "../ir/infer.ts";
import { isElementwise } from "../ir/ops.ts";
import { formatType, shapeEq } from "../ir/shape.ts";
import type { NotFused } from "./pass.ts";
import { asGraph, coversOf, describe, replaceNode, type Draft } from "./rewrite.ts";

/** A fused expression larger than this is refused: sharing a value inside one expression copies
 *  it, and copies of copies grow exponentially. */
export const MAX_TERMS = 256;

/** Elementwise ops and maps: what an expression can absorb. */
export function isFusible(n: NodeData): boolean {
  return isElementwise(n.op) || n.op === "map";
}

/** A node's scalar expression, given the expressions of its operands (a fusible node only). */
export function nodeExpr(n: NodeData, args: readonly Expr[]): Expr {
  if (isBinaryOp(n.op)) return binary(n.op, args[0], args[1]);
  if (isUnaryOp(n.op)) return unary(n.op, args[0]);
  if (n.op === "map") return substitute(n.attrs.expr, (i) => args[i]);
  throw new Error(`${n.op} is not elementwise`);
}

export function exprSize(e: Expr): number {
  switch (e.k) {
    case "in":
    case "acc":
    case "const":
      return 1;
    case "unary":
      return 1 + exprSize(e.a);
    case "binary":
      return 1 + exprSize(e.a) + exprSize(e.b);
  }
}

function inputsInOrder(e: Expr, out: number[]): number[] {
  switch (e.k) {
    case "in":
      if (!out.includes(e.i)) out.push(e.i);
      break;
    case "acc":
    case "const":
      break;
    case "unary":
      inputsInOrder(e.a, out);
      break;
    case "binary":
      inputsInOrder(e.a, out);
      inputsInOrder(e.b, out);
      break;
  }
  return out;
}

/** Temporary leaves: `leaf(key)` is the same `$i` for the same value. */
export interface Leaves {
  readonly leaf: (key: string) => Expr;
  readonly keys: readonly string[];
}

export function leaves(): Leaves {
  const keys: string[] = [];
  return {
    keys,
    leaf: (key) => {
      let i = keys.indexOf(key);
      if (i < 0) i = keys.push(key) - 1;
      return input(i);
    },
  };
}

/** `$i` dense in order of first appearance; the operands in that order. */
export function renumber(e: Expr, keys: readonly string[]): { expr: Expr; operands: string[] } {
  const order = inputsInOrder(e, []);
  return {
    expr: substitute(e, (i) => input(order.indexOf(i))),
    operands: order.map((i) => keys[i]),
  };
}

export interface BuildOptions {
  /** Nodes whose expression is written out (the group being fused). */
  readonly inside: ReadonlySet<string>;
  /** Values with a fixed expression (a matmul's output: `acc`). */
  readonly preset?: ReadonlyMap<string, Expr>;
  readonly leaf: (key: string) => Expr;
  readonly inlineConsts: boolean;
  /** Write add and mul with the accumulator side first: `add(acc, $0)`, never `add($0, acc)`. */
  readonly accFirst?: boolean;
}

/** The value of a rank-0 const, else undefined. */
export function scalarConst(g: Graph, key: string): number | undefined {
  const n = nodeData(g, key);
  return n.op === "const" && n.type.shape.length === 0 ? n.attrs.value : undefined;
}

/** A builder of expressions: written out through `inside` nodes, leaves elsewhere; undefined
 *  when one would exceed MAX_TERMS. Shared values are built once. */
export function exprBuilder(g: Graph, o: BuildOptions): (key: string) => Expr | undefined {
  const memo = new Map<string, Expr | undefined>();
  const go = (k: string): Expr | undefined => {
    if (memo.has(k)) return memo.get(k);
    const pre = o.preset?.get(k);
    let e: Expr | undefined;
    if (pre) e = pre;
    else if (o.inside.has(k)) e = inner(k);
    else {
      const c = o.inlineConsts ? scalarConst(g, k) : undefined;
      e = c === undefined ? o.leaf(k) : constant(c);
    }
    memo.set(k, e);
    return e;
  };
  const inner = (k: string): Expr | undefined => {
    const args: Expr[] = [];
    for (const a of operands(g, k)) {
      const x = go(a);
      if (!x) return undefined;
      args.push(x);
    }
    const n = nodeData(g, k);
    if (o.accFirst && (n.op === "add" || n.op === "mul") && usesAcc(args[1]) && !usesAcc(args[0]))
      args.reverse();
    const e = nodeExpr(n, args);
    return exprSize(e) > MAX_TERMS ? undefined : e;
  };
  return go;
}

/** Why `key` must be materialized: "a second user: %x is read by %a and %b". */
export function secondUser(g: Graph, key: string): string {
  const who = users(g, key)
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }))
    .map((u) => `%${u}`);
  if (g.outputs.includes(key)) who.push("the graph outputs");
  const list = who.length > 1 ? `${who.slice(0, -1).join(", ")} and ${who.at(-1)}` : who[0];
  return `a second user: %${key} is read by ${list}, so it is materialized`;
}

/** Rebuilds `root` in place as `node` over `ins` (its name, users and place in the printed order
 *  stay), drops the nodes it absorbed and the inlined consts nothing reads any more. `covers` is
 *  the union of what all of them covered. The caller checked that nothing else reads them. */
export function rebuild(
  d: Draft,
  root: string,
  node: OpNode,
  ins: readonly string[],
  absorbed: readonly string[],
  origin: string,
): void {
  const g = asGraph(d);
  const fused = new Set([...absorbed, root]);
  const consts = new Set(
    [...fused].flatMap((k) => operands(g, k)).filter((c) => scalarConst(g, c) !== undefined),
  );
  const gone = [...consts].filter(
    (c) =>
      !fused.has(c) &&
      !ins.includes(c) &&
      !d.outputs.includes(c) &&
      users(g, c).every((u) => fused.has(u)),
  );
  const order = new Map(d.nodes.nodes().map((k, i) => [k, i]));
  const parts = [...new Set([...absorbed, root, ...gone])];
  parts.sort((a, b) => order.get(a)! - order.get(b)!);
  const covers = [...new Set(parts.flatMap((k) => coversOf(g, k)))];
  const old = nodeData(g, root);
  const data: NodeData = {
    ...node,
    type: old.type,
    ...(old.loc === undefined ? {} : { loc: old.loc }),
    origin,
    covers,
  };
  replaceNode(d, root, data, ins);
  for (const k of [...absorbed, ...gone]) if (k !== root) d.nodes.dropNode(k);
}

/** Why a fused node would not type as the value it replaces, or undefined when it does. */
export function typeProblem(
  g: Graph,
  root: string,
  node: OpNode,
  ins: readonly string[],
): string | undefined {
  const t = inferType(
    node.op,
    node.attrs,
    ins.map((k) => nodeData(g, k).type),
  );
  const want = nodeData(g, root).type;
  if (typeof t === "string") return t;
  if (t.dtype !== want.dtype || !shapeEq(t.shape, want.shape))
    return `the fused node would be ${formatType(t)}, not ${formatType(want)}`;
  return undefined;
}

export function notFused(g: Graph, pattern: string, at: string, reason: string): NotFused {
  return { pattern, at: describe(g, at), reason };
}

/** A node whose expression can take in the elementwise work that feeds it (a prologue). */
interface Consumer {
  /** Operands outside the expression, kept in front: (a, b) of a matmul, (γ, β) of a norm. */
  readonly fixed: readonly string[];
  /** Operands the expression reads: `$i` is exprOperands[i]. */
  readonly exprOperands: readonly string[];
  readonly isExprSlot: (slot: number) => boolean;
  /** The expression, given what each `$i` stands for. */
  readonly expr: (arg: (i: number) => Expr) => Expr;
  readonly make: (expr: Expr) => OpNode;
  /** A layer_norm becomes a layer_norm_map only when it absorbs something. */
  readonly needsGroup: boolean;
  /** The rebuilt node needs at least one operand in its expression. */
  readonly needsOperand: boolean;
}

function consumer(g: Graph, key: string): Consumer | undefined {
  const n = nodeData(g, key);
  const ops = operands(g, key);
  const tail = (from: number) => ({
    fixed: ops.slice(0, from),
    exprOperands: ops.slice(from),
    isExprSlot: (s: number) => s >= from,
    needsGroup: false,
  });
  if (isFusible(n))
    return {
      ...tail(0),
      expr: (arg) =>
        nodeExpr(
          n,
          ops.map((_, i) => arg(i)),
        ),
      make: (expr) => ({ op: "map", attrs: { expr } }),
      needsOperand: true,
    };
  if (n.op === "matmul_epilogue")
    return {
      ...tail(2),
      expr: (arg) => substitute(n.attrs.expr, arg),
      make: (expr) => ({ op: "matmul_epilogue", attrs: { transposeB: n.attrs.transposeB, expr } }),
      needsOperand: false,
    };
  if (n.op === "layer_norm_map")
    return {
      ...tail(2),
      expr: (arg) => substitute(n.attrs.expr, arg),
      make: (expr) => ({ op: "layer_norm_map", attrs: { eps: n.attrs.eps, expr } }),
      needsOperand: true,
    };
  if (n.op === "layer_norm")
    return {
      fixed: ops.slice(1),
      exprOperands: ops.slice(0, 1),
      isExprSlot: (s) => s === 0,
      expr: (arg) => arg(0),
      make: (expr) => ({ op: "layer_norm_map", attrs: { eps: n.attrs.eps, expr } }),
      needsGroup: true,
      needsOperand: true,
    };
  return undefined;
}

/** The fusible values feeding `c`'s expression whose every use is inside the fusion: the least
 *  set closed under "an operand of the fusion all of whose users are in it". Also the fusible
 *  operands left out (each must be materialized: it has a use elsewhere, or is an output). */
function prologue(g: Graph, key: string, c: Consumer): { group: Set<string>; stops: string[] } {
  const group = new Set<string>();
  const frontier = (): string[] => [
    ...new Set([...c.exprOperands, ...[...group].flatMap((k) => operands(g, k))]),
  ];
  const joins = (o: string): boolean =>
    !group.has(o) &&
    isFusible(nodeData(g, o)) &&
    !g.outputs.includes(o) &&
    g.nodes.outEdges(o).every((e) => {
      const t = g.nodes.target(e);
      return group.has(t) || (t === key && c.isExprSlot(g.nodes.getEdgeAttributes(e).slot));
    });
  for (let grew = true; grew;) {
    grew = false;
    for (const o of frontier())
      if (joins(o)) {
        group.add(o);
        grew = true;
      }
  }
  const stops = frontier().filter((o) => !group.has(o) && isFusible(nodeData(g, o)));
  return { group, stops };
}

/** Whether `key` already is `node` over `ins`. */
function sameNode(g: Graph, key: string, node: OpNode, ins: readonly string[]): boolean {
  const old = nodeData(g, key);
  const was = operands(g, key);
  return (
    old.op === node.op &&
    was.length === ins.length &&
    was.every((k, i) => k === ins[i]) &&
    "expr" in old.attrs &&
    "expr" in node.attrs &&
    formatExpr(old.attrs.expr) === formatExpr(node.attrs.expr)
  );
}

/** Folds the elementwise work feeding `key`'s expression into it (see `prologue`): a map, a
 *  matmul_epilogue's extras, a layer_norm_map's inputs, a layer_norm's input (which makes it a
 *  layer_norm_map). A fusible node with nothing to absorb still becomes a normalized map. Records
 *  a NotFused for each fusible operand that had to stay out; returns whether it rewrote. */
export function fuseIntoConsumer(
  d: Draft,
  key: string,
  pattern: string,
  out: NotFused[] | undefined,
): boolean {
  const g = asGraph(d);
  const c = consumer(g, key);
  if (!c) return false;
  const found = prologue(g, key, c);
  for (const o of found.stops) out?.push(notFused(g, pattern, key, secondUser(g, o)));
  let group = found.group;
  let r = fusedExpr(g, c, group);
  if (!r && group.size > 0) {
    out?.push(notFused(g, pattern, key, `the fused expression would exceed ${MAX_TERMS} terms`));
    group = new Set();
    r = fusedExpr(g, c, group); // the node alone, still normalized
  }
  if (!r || (group.size === 0 && c.needsGroup)) return false;
  const node = c.make(r.expr);
  const ins = [...c.fixed, ...r.operands];
  if (group.size === 0 && sameNode(g, key, node, ins)) return false;
  const bad = typeProblem(g, key, node, ins);
  if (bad) {
    out?.push(notFused(g, pattern, key, bad));
    return false;
  }
  rebuild(d, key, node, ins, [...group], pattern);
  return true;
}

/** `c`'s expression with `group` written out, renumbered; rank-0 consts inlined unless that
 *  leaves nothing to read. Undefined when it would exceed MAX_TERMS. */
function fusedExpr(
  g: Graph,
  c: Consumer,
  group: ReadonlySet<string>,
): { expr: Expr; operands: string[] } | undefined {
  const attempt = (inlineConsts: boolean) => {
    const l = leaves();
    const build = exprBuilder(g, { inside: group, leaf: l.leaf, inlineConsts });
    const args = c.exprOperands.map(build);
    const e = args.every((a) => a !== undefined) ? c.expr((i) => args[i]!) : undefined;
    return e && exprSize(e) <= MAX_TERMS ? renumber(e, l.keys) : undefined;
  };
  const r = attempt(true);
  return r && r.operands.length === 0 && c.needsOperand ? attempt(false) : r;
}
