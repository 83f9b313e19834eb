/** The scalar expression IR that fused elementwise work is written in: the body of a `map` kernel,
 *  a matmul's epilogue, a layer norm's prologue. Both backends render it; the reference
 *  interpreter evaluates it with the same scalar functions the elementwise ops use.
 *
 *  Text form: `gelu_tanh(add(acc, $0))` — `$i` is the i-th extra operand, `acc` the value being
 *  finished (a matmul's accumulator), numbers are constants. */
import { BINARY_FN, UNARY_FN, type BinaryOp, type UnaryOp } from "./ops-elementwise.ts";
import { formatNumber } from "./format-number.ts";

export type Expr =
  | { readonly k: "in"; readonly i: number }
  | { readonly k: "acc" }
  | { readonly k: "const"; readonly v: number }
  | { readonly k: "unary"; readonly op: UnaryOp; readonly a: Expr }
  | { readonly k: "binary"; readonly op: BinaryOp; readonly a: Expr; readonly b: Expr };

export const input = (i: number): Expr => ({ k: "in", i });
export const ACC: Expr = { k: "acc" };
export const constant = (v: number): Expr => ({ k: "const", v });
export const unary = (op: UnaryOp, a: Expr): Expr => ({ k: "unary", op, a });
export const binary = (op: BinaryOp, a: Expr, b: Expr): Expr => ({ k: "binary", op, a, b });

export function isUnaryOp(s: string): s is UnaryOp {
  return Object.prototype.hasOwnProperty.call(UNARY_FN, s);
}
export function isBinaryOp(s: string): s is BinaryOp {
  return Object.prototype.hasOwnProperty.call(BINARY_FN, s);
}

export function evalExpr(e: Expr, ins: ArrayLike<number>, acc = 0): number {
  switch (e.k) {
    case "in":
      return ins[e.i];
    case "acc":
      return acc;
    case "const":
      return e.v;
    case "unary":
      return UNARY_FN[e.op](evalExpr(e.a, ins, acc));
    case "binary":
      return BINARY_FN[e.op](evalExpr(e.a, ins, acc), evalExpr(e.b, ins, acc));
  }
}

export function formatExpr(e: Expr): string {
  switch (e.k) {
    case "in":
      return `$${e.i}`;
    case "acc":
      return "acc";
    case "const":
      return formatNumber(e.v);
    case "unary":
      return `${e.op}(${formatExpr(e.a)})`;
    case "binary":
      return `${e.op}(${formatExpr(e.a)}, ${formatExpr(e.b)})`;
  }
}

/** Highest `$i` used plus one: the number of extra operands the expression reads. */
export function exprArity(e: Expr): number {
  switch (e.k) {
    case "in":
      return e.i + 1;
    case "acc":
    case "const":
      return 0;
    case "unary":
      return exprArity(e.a);
    case "binary":
      return Math.max(exprArity(e.a), exprArity(e.b));
  }
}

export function usesAcc(e: Expr): boolean {
  switch (e.k) {
    case "acc":
      return true;
    case "in":
    case "const":
      return false;
    case "unary":
      return usesAcc(e.a);
    case "binary":
      return usesAcc(e.a) || usesAcc(e.b);
  }
}

/** Replaces `$i` by `f(i)` (used when fusing one expression into another). */
export function substitute(e: Expr, f: (i: number) => Expr): Expr {
  switch (e.k) {
    case "in":
      return f(e.i);
    case "acc":
    case "const":
      return e;
    case "unary":
      return unary(e.op, substitute(e.a, f));
    case "binary":
      return binary(e.op, substitute(e.a, f), substitute(e.b, f));
  }
}

const TOKEN =
  /\s*(?:(\$\d+)|(acc)\b|(-?inf\b|nan\b|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|([a-z_]+)|([(),]))/y;

/** Parses the text form; a string says what is wrong. */
export function parseExpr(text: string): Expr | string {
  let pos = 0;
  const next = (): RegExpExecArray | undefined => {
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(text);
    if (m) pos = TOKEN.lastIndex;
    return m ?? undefined;
  };
  const expect = (p: string): void => {
    const m = next();
    if (!m || m[5] !== p) throw new Error(`expected '${p}' at ${pos}`);
  };
  const term = (): Expr => {
    const m = next();
    if (!m) throw new Error(`unexpected text at ${pos}`);
    if (m[1]) return input(Number(m[1].slice(1)));
    if (m[2]) return ACC;
    if (m[3])
      return constant(
        m[3] === "nan"
          ? NaN
          : m[3].endsWith("inf")
            ? m[3][0] === "-"
              ? -Infinity
              : Infinity
            : Number(m[3]),
      );
    const op = m[4];
    if (!op) throw new Error(`unexpected '${m[5]}' at ${pos}`);
    expect("(");
    const a = term();
    if (isUnaryOp(op)) {
      expect(")");
      return unary(op, a);
    }
    if (!isBinaryOp(op)) throw new Error(`unknown function ${op}`);
    expect(",");
    const b = term();
    expect(")");
    return binary(op, a, b);
  };
  try {
    const e = term();
    if (text.slice(pos).trim() !== "") return `unexpected text after the expression at ${pos}`;
    return e;
  } catch (err) {
    return `bad expression ${JSON.stringify(text)}: ${(err as Error).message}`;
  }
}

export function isExpr(v: unknown): v is Expr {
  if (typeof v !== "object" || v === null) return false;
  const e = v as { k?: unknown; i?: unknown; v?: unknown; op?: unknown; a?: unknown; b?: unknown };
  switch (e.k) {
    case "in":
      return Number.isSafeInteger(e.i) && (e.i as number) >= 0;
    case "acc":
      return true;
    case "const":
      return typeof e.v === "number";
    case "unary":
      return typeof e.op === "string" && isUnaryOp(e.op) && isExpr(e.a);
    case "binary":
      return typeof e.op === "string" && isBinaryOp(e.op) && isExpr(e.a) && isExpr(e.b);
    default:
      return false;
  }
}
