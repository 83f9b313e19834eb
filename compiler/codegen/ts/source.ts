/** Source-text building blocks shared by the TypeScript kernel generators: symbolic sizes as
 *  code, user strings as comments and string literals, and strided loop nests.
 *
 *  Naming rule: every identifier in generated code is the generator's own — `k5_matmul` (the
 *  kernel's dispatch index and op), `b12` (buffer 12), `d0` (the first symbolic dim), and fixed
 *  locals (`i0`, `acc`, `out`, …). User strings (param names, node keys, dim symbols, the model's
 *  name) reach the source only through `comment` (inside a comment, unable to end it) or
 *  `literal` (a JSON string literal with U+2028/U+2029 escaped). */
import type { Dim, Shape } from "../../ir/shape.ts";
import { commentText } from "../names.ts";
import { symMul, symNumber, symOfDim, type SymInt } from "../../lower/sym.ts";

/** A user string made safe for a comment. */
export const comment = commentText;

/** A user string as a TypeScript string literal: JSON, with the JS line separators escaped. */
export function literal(s: string): string {
  return JSON.stringify(s)
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/** The run-time variables that hold the symbolic dims: symbol → `d0`, `d1`, … in a fixed order
 *  that does not depend on the symbols' spelling. */
export type DimVars = ReadonlyMap<string, string>;

/** A polynomial as an expression over the dim variables: `24 + 72 * d0`. */
export function renderSym(a: SymInt, dims: DimVars): string {
  if (a.length === 0) return "0";
  const terms = a.map((t) => {
    const vars = t.syms.map((s) => {
      const v = dims.get(s);
      if (v === undefined) throw new Error(`dim symbol ${s} has no variable`);
      return v;
    });
    if (vars.length === 0) return String(t.coef);
    if (t.coef === 1) return vars.join(" * ");
    if (t.coef === -1) return `-${vars.join(" * ")}`;
    return [String(t.coef), ...vars].join(" * ");
  });
  return terms.reduce((acc, t) => (t.startsWith("-") ? `${acc} - ${t.slice(1)}` : `${acc} + ${t}`));
}

export function renderDim(d: Dim, dims: DimVars): string {
  return renderSym(symOfDim(d), dims);
}

/** `x` when plain (a name or a number), else `(x)`. */
export function atom(x: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$|^\d+$/.test(x) ? x : `(${x})`;
}

/** `base + i * stride`, leaving out what is trivial. `stride` is rendered source. */
export function plus(base: string, i: string, stride: string): string {
  if (stride === "0") return base;
  const term = stride === "1" ? i : `${atom(i)} * ${atom(stride)}`;
  return base === "0" || base === "" ? term : `${base} + ${term}`;
}

/** An index into a buffer: `at + Σ idx[k]·strides[k]`. */
export function index(at: string, idx: readonly string[], strides: readonly string[]): string {
  return idx.reduce((acc, v, k) => plus(acc, v, strides[k]), at);
}

/** Row-major strides of a shape, as polynomials. */
export function rowMajor(shape: Shape): SymInt[] {
  const out = new Array<SymInt>(shape.length);
  let acc: SymInt = [{ coef: 1, syms: [] }];
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = acc;
    acc = symMul(acc, symOfDim(shape[i]));
  }
  return out;
}

/** A loop nest over `shape` with several strided views walked together. Axes of size 1 are
 *  dropped, and adjacent axes merged where every view's strides chain (stride[i] =
 *  stride[i+1]·size[i+1]), so a contiguous elementwise kernel is one flat loop. */
export interface Nest {
  /** Sizes of the remaining axes. */
  readonly sizes: readonly SymInt[];
  /** Per view, its stride on each remaining axis. */
  readonly strides: readonly (readonly SymInt[])[];
}

const same = (a: SymInt, b: SymInt): boolean =>
  a.length === b.length &&
  a.every((t, i) => t.coef === b[i].coef && t.syms.join("*") === b[i].syms.join("*"));

export function coalesce(shape: Shape, views: readonly (readonly SymInt[])[]): Nest {
  const sizes: SymInt[] = [];
  const strides: SymInt[][] = views.map(() => []);
  shape.forEach((d, ax) => {
    const size = symOfDim(d);
    if (symNumber(size) === 1) return;
    const last = sizes.length - 1;
    const chains = last >= 0 && views.every((v, k) => same(strides[k][last], symMul(v[ax], size)));
    if (chains) {
      sizes[last] = symMul(sizes[last], size);
      views.forEach((v, k) => (strides[k][last] = v[ax]));
    } else {
      sizes.push(size);
      views.forEach((v, k) => strides[k].push(v[ax]));
    }
  });
  return { sizes, strides };
}

/** Source lines of a loop nest: `for (let i0 = 0; i0 < n0; i0++) { … }`, with `body(idx)`
 *  inside (idx: the loop variables, outermost first). */
export function loops(
  sizes: readonly string[],
  body: (idx: readonly string[]) => readonly string[],
  v = "i",
): string[] {
  const idx = sizes.map((_, k) => `${v}${k}`);
  let lines = [...body(idx)];
  for (let k = sizes.length - 1; k >= 0; k--)
    lines = [
      `for (let ${idx[k]} = 0; ${idx[k]} < ${sizes[k]}; ${idx[k]}++) {`,
      ...indent(lines),
      "}",
    ];
  return lines;
}

export function indent(lines: readonly string[], by = "  "): string[] {
  return lines.map((l) => (l === "" ? l : by + l));
}
