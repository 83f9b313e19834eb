/** Symbolic integers for view offsets and strides: polynomials in the graph's dims with integer
 *  coefficients, e.g. `8*T*T + 24`. A contiguous [3,T,T] buffer has strides [T*T, T, 1]; a slice
 *  of it starts at `k*T*T`. Dims are `+`-sums of symbols and numbers (`P+T`), so every product of
 *  dims is such a polynomial. Normal form: terms with distinct monomials (symbols sorted, repeats
 *  kept), no zero coefficient, sorted by monomial; the empty list is 0. Plain data, so a Program
 *  prints as JSON. */
import type { Bindings, Dim } from "../ir/shape.ts";
import { isSymbol } from "../ir/shape.ts";

export interface Term {
  readonly coef: number;
  /** The monomial: symbols multiplied, sorted; empty for the constant term. */
  readonly syms: readonly string[];
}

export type SymInt = readonly Term[];

const key = (t: Term): string => t.syms.join("*");

function normalize(terms: readonly Term[]): SymInt {
  const acc = new Map<string, Term>();
  for (const t of terms) {
    const k = key(t);
    const c = (acc.get(k)?.coef ?? 0) + t.coef;
    acc.set(k, { coef: c, syms: t.syms });
  }
  return [...acc.values()]
    .filter((t) => t.coef !== 0)
    .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

export function symConst(n: number): SymInt {
  return normalize([{ coef: n, syms: [] }]);
}

export const ZERO: SymInt = [];
export const ONE: SymInt = symConst(1);

/** A dim as a polynomial: `P+T+3` → P + T + 3. */
export function symOfDim(d: Dim): SymInt {
  if (typeof d === "number") return symConst(d);
  return normalize(
    d.split("+").map((t) => (isSymbol(t) ? { coef: 1, syms: [t] } : { coef: Number(t), syms: [] })),
  );
}

export function symAdd(a: SymInt, b: SymInt): SymInt {
  return normalize([...a, ...b]);
}

export function symMul(a: SymInt, b: SymInt): SymInt {
  const out: Term[] = [];
  for (const x of a)
    for (const y of b) out.push({ coef: x.coef * y.coef, syms: [...x.syms, ...y.syms].sort() });
  return normalize(out);
}

export function symScale(a: SymInt, n: number): SymInt {
  return symMul(a, symConst(n));
}

/** The product of dims. */
export function symProduct(dims: readonly Dim[]): SymInt {
  return dims.reduce<SymInt>((p, d) => symMul(p, symOfDim(d)), ONE);
}

export function symEq(a: SymInt, b: SymInt): boolean {
  return formatSym(a) === formatSym(b);
}

/** The number, when the polynomial has no symbols. */
export function symNumber(a: SymInt): number | undefined {
  if (a.length === 0) return 0;
  return a.length === 1 && a[0].syms.length === 0 ? a[0].coef : undefined;
}

/** b / a when both are single terms and a divides b with a whole, positive quotient. */
export function symDiv(b: SymInt, a: SymInt): SymInt | undefined {
  if (a.length !== 1 || b.length !== 1) return undefined;
  const [x, y] = [a[0], b[0]];
  const q = y.coef / x.coef;
  if (!Number.isInteger(q) || q <= 0) return undefined;
  const rest = [...y.syms];
  for (const s of x.syms) {
    const i = rest.indexOf(s);
    if (i < 0) return undefined;
    rest.splice(i, 1);
  }
  return normalize([{ coef: q, syms: rest }]);
}

export function evalSym(a: SymInt, b: Bindings): number {
  let sum = 0;
  for (const t of a) {
    let v = t.coef;
    for (const s of t.syms) {
      const x = b.get(s);
      if (x === undefined) throw new Error(`symbol ${s} is not bound`);
      v *= x;
    }
    sum += v;
  }
  return sum;
}

/** `8*T*T + 24`; `0` for zero. Backends may paste it into code once symbols are variables. */
export function formatSym(a: SymInt): string {
  if (a.length === 0) return "0";
  return a
    .map((t) =>
      t.syms.length === 0
        ? String(t.coef)
        : [...(t.coef === 1 ? [] : [String(t.coef)]), ...t.syms].join("*"),
    )
    .join(" + ");
}
