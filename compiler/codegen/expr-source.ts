/** An `Expr` (compiler/ir/expr.ts) rendered as a source expression, in TypeScript or WGSL.
 *
 *  The caller says what `$i` and `acc` are in its kernel (`ctx.input`, `ctx.acc`); the result is
 *  the expression text, the temporaries it needs (declarations to place before it) and the
 *  helper functions it calls (`renderHelpers` in helpers.ts, once per module).
 *
 *  Rules:
 *  - A subexpression is named (`const t0 = …`) only when it is used twice — written twice in the
 *    expression, or read twice by the form an op renders to (relu's `x > 0 ? x : 0`); everything
 *    else is inlined, with parentheses only where precedence needs them.
 *  - TypeScript computes in float64, like the reference interpreter, with the same formulas
 *    (`rsqrt` is `1 / Math.sqrt(x)`, relu maps NaN to 0), so the two agree to the last bit except
 *    through `kiln_erf` (helpers.ts), which is within a few ulps of compiler/ir/erf.ts.
 *  - WGSL: every literal is an f32 literal with a decimal point or an exponent. WGSL assumes
 *    finite math, so ±∞ (and a constant beyond f32's range) becomes the finite sentinel ±3.4e38,
 *    said so in a comment next to it, and NaN has no form at all (an error). `tanh` clamps its argument to ±15 (where tanh is ±1 in
 *    f32), because some backends compute it as a quotient of exponentials that overflows. */
import { fail } from "../errors.ts";
import { formatExpr, type Expr } from "../ir/expr.ts";
import type { BinaryOp, UnaryOp } from "../ir/ops-elementwise.ts";
import type { Helper } from "./helpers.ts";

export type { Helper } from "./helpers.ts";

export type Target = "ts" | "wgsl";

export interface ExprContext {
  readonly target: Target;
  /** The source of `$i`: a name or an element read, free of side effects. It is written again
   *  wherever `$i` occurs, unless it is more than a plain name and occurs twice. */
  readonly input: (i: number) => string;
  /** The source of `acc` (a name); needed only when the expression reads `acc`. */
  readonly acc?: string;
  /** Prefix of the temporaries' names (default `t`): `t0`, `t1`, … */
  readonly temp?: string;
}

export interface RenderedExpr {
  /** Declarations of the temporaries, in the order they must appear. */
  readonly temps: readonly string[];
  /** The expression; it may read the temporaries. */
  readonly value: string;
  /** Helper functions it calls; emit them with `renderHelpers` (which adds what they call). */
  readonly helpers: ReadonlySet<Helper>;
}

/** What a rendered fragment binds as tightly as: an operand of looser precedence is parenthesized. */
const enum Prec {
  Conditional = 0, // a ? b : c
  Additive = 1,
  Multiplicative = 2,
  Unary = 3, // -x, and negative literals
  Atom = 4, // names, calls, element reads, non-negative literals
}

interface Fragment {
  readonly text: string;
  readonly prec: Prec;
}

const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** How often each unary op's rendering reads its operand, by target. */
const READS: { readonly [O in UnaryOp]: { readonly ts: number; readonly wgsl: number } } = {
  neg: { ts: 1, wgsl: 1 },
  exp: { ts: 1, wgsl: 1 },
  sqrt: { ts: 1, wgsl: 1 },
  rsqrt: { ts: 1, wgsl: 1 },
  tanh: { ts: 1, wgsl: 1 },
  relu: { ts: 2, wgsl: 2 }, // x > 0 ? x : 0 / select(0.0, x, x > 0.0)
  gelu: { ts: 1, wgsl: 1 },
  gelu_tanh: { ts: 1, wgsl: 1 },
};

export function renderExpr(e: Expr, ctx: ExprContext): RenderedExpr {
  const uses = countUses(e, ctx);
  const temps: string[] = [];
  const named = new Map<string, string>();
  const helpers = new Set<Helper>();
  const prefix = ctx.temp ?? "t";

  const render = (x: Expr): Fragment => {
    const atom = atomOf(x, ctx);
    if (atom) return atom;
    const key = formatExpr(x);
    const name = named.get(key);
    if (name) return { text: name, prec: Prec.Atom };
    const frag = compound(x);
    if ((uses.get(key) ?? 0) < 2) return frag;
    const t = `${prefix}${named.size}`;
    named.set(key, t);
    temps.push(ctx.target === "ts" ? `const ${t} = ${frag.text};` : `let ${t} = ${frag.text};`);
    return { text: t, prec: Prec.Atom };
  };
  /** An element read or an operation, before any naming. */
  const compound = (x: Expr): Fragment => {
    switch (x.k) {
      case "in":
        return { text: ctx.input(x.i), prec: Prec.Atom };
      case "unary":
        return renderUnary(x.op, render(x.a), ctx.target, helpers);
      case "binary":
        return renderBinary(x.op, render(x.a), render(x.b));
      case "acc":
      case "const":
        throw new Error(`unreachable: ${x.k} is an atom`);
    }
  };
  return { temps, value: render(e).text, helpers };
}

/** Uses of every non-atomic subexpression, counted on the expression as a DAG: a repeated
 *  subexpression's own parts count once (they are computed once, inside its temporary). */
function countUses(e: Expr, ctx: ExprContext): Map<string, number> {
  const uses = new Map<string, number>();
  const visit = (x: Expr): void => {
    if (atomOf(x, ctx)) return;
    const key = formatExpr(x);
    const n = uses.get(key) ?? 0;
    uses.set(key, n + 1);
    if (n > 0) return;
    if (x.k === "unary") for (let r = 0; r < READS[x.op][ctx.target]; r++) visit(x.a);
    else if (x.k === "binary") {
      visit(x.a);
      visit(x.b);
    }
  };
  visit(e);
  return uses;
}

/** Leaves that are written out wherever they occur; undefined for anything worth naming. */
function atomOf(x: Expr, ctx: ExprContext): Fragment | undefined {
  switch (x.k) {
    case "const":
      return numberFragment(x.v, ctx.target);
    case "acc":
      if (ctx.acc === undefined) throw new Error("the expression reads acc, but ctx.acc is unset");
      return { text: ctx.acc, prec: Prec.Atom };
    case "in": {
      const text = ctx.input(x.i);
      return PLAIN_NAME.test(text) ? { text, prec: Prec.Atom } : undefined;
    }
    case "unary":
    case "binary":
      return undefined;
  }
}

/** A number as a literal of the target. WGSL: always a decimal point or an exponent; ±∞ become
 *  the finite sentinel ±3.4e38 (WGSL assumes finite math), with a comment saying so. */
export function renderNumber(v: number, target: Target): string {
  return numberFragment(v, target).text;
}

function numberFragment(v: number, target: Target): Fragment {
  if (Number.isNaN(v)) {
    if (target === "ts") return { text: "NaN", prec: Prec.Atom };
    fail("not-built", "expression", "a NaN constant has no WGSL form (WGSL assumes finite math)");
  }
  if (target === "ts" && !Number.isFinite(v))
    return v > 0 ? { text: "Infinity", prec: Prec.Atom } : { text: "-Infinity", prec: Prec.Unary };
  // In f32 this is ±∞ (a literal beyond f32's range is even a WGSL compile error).
  if (target === "wgsl" && !Number.isFinite(Math.fround(v))) {
    const what = Number.isFinite(v) ? `${String(v)} is beyond f32` : v > 0 ? "+inf" : "-inf";
    const text = `${v > 0 ? "" : "-"}3.4e38 /* ${what}: WGSL assumes finite math */`;
    return { text, prec: v > 0 ? Prec.Atom : Prec.Unary };
  }
  const neg = v < 0 || Object.is(v, -0);
  let text = neg ? `-${String(-v)}` : String(v);
  if (target === "wgsl" && !/[.e]/.test(text)) text += ".0";
  return { text, prec: neg ? Prec.Unary : Prec.Atom };
}

function wrap(f: Fragment, min: Prec): string {
  return f.prec < min ? `(${f.text})` : f.text;
}

/** A call's argument needs no parentheses. */
function call(fn: string, ...args: string[]): Fragment {
  return { text: `${fn}(${args.join(", ")})`, prec: Prec.Atom };
}

const BINARY: { readonly [O in BinaryOp]: { readonly sym: string; readonly prec: Prec } } = {
  add: { sym: "+", prec: Prec.Additive },
  sub: { sym: "-", prec: Prec.Additive },
  mul: { sym: "*", prec: Prec.Multiplicative },
  div: { sym: "/", prec: Prec.Multiplicative },
};

function renderBinary(op: BinaryOp, a: Fragment, b: Fragment): Fragment {
  const { sym, prec } = BINARY[op];
  // Left-associative: the right operand of `-` and `/` (and, for float rounding, of `+` and `*`
  // too — `a + (b + c)` is not `a + b + c`) keeps its parentheses at equal precedence.
  // `a - -1` keeps a space between the signs (`--` is a WGSL token).
  const right = b.prec <= prec ? `(${b.text})` : b.text;
  return { text: `${wrap(a, prec)} ${sym} ${right}`, prec };
}

function renderUnary(op: UnaryOp, a: Fragment, target: Target, helpers: Set<Helper>): Fragment {
  const ts = target === "ts";
  switch (op) {
    case "neg":
      // `-(-1)`, never `--1`.
      return { text: `-${a.prec <= Prec.Unary ? `(${a.text})` : a.text}`, prec: Prec.Unary };
    case "exp":
      return call(ts ? "Math.exp" : "exp", a.text);
    case "sqrt":
      return call(ts ? "Math.sqrt" : "sqrt", a.text);
    case "rsqrt":
      return ts
        ? { text: `1 / Math.sqrt(${a.text})`, prec: Prec.Multiplicative }
        : call("inverseSqrt", a.text);
    case "tanh":
      return ts ? call("Math.tanh", a.text) : call("tanh", `clamp(${a.text}, -15.0, 15.0)`);
    case "relu":
      return ts
        ? { text: `${wrap(a, Prec.Additive)} > 0 ? ${a.text} : 0`, prec: Prec.Conditional }
        : call("select", "0.0", a.text, `${a.text} > 0.0`);
    case "gelu":
      helpers.add("kiln_gelu");
      return call("kiln_gelu", a.text);
    case "gelu_tanh":
      helpers.add("kiln_gelu_tanh");
      return call("kiln_gelu_tanh", a.text);
  }
}
