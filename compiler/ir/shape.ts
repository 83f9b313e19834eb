/** Shapes with symbolic dimensions.
 *  A Dim is a concrete size or a symbol (`T`, `S`) bound at run time; a symbol may also be a sum
 *  of symbols and sizes (`P+T`), which is how a KV cache grows. Two dims are equal when they are
 *  the same number or the same (normalized) symbol text. */
import type { DType } from "./dtype.ts";

export type Dim = number | string;
export type Shape = readonly Dim[];

export interface TensorType {
  readonly dtype: DType;
  readonly shape: Shape;
}

export type Bindings = ReadonlyMap<string, number>;

const SYMBOL = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isSymbol(s: string): boolean {
  return SYMBOL.test(s);
}

/** A valid dim: a non-negative integer, a symbol, or a `+`-sum of those. */
export function isDim(d: unknown): d is Dim {
  if (typeof d === "number") return Number.isSafeInteger(d) && d >= 0;
  if (typeof d !== "string") return false;
  return d.split("+").every((t) => isSymbol(t) || /^\d+$/.test(t));
}

export function dimEq(a: Dim, b: Dim): boolean {
  return a === b;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]));
}

export function formatDim(d: Dim): string {
  return String(d);
}

export function formatShape(s: Shape): string {
  return `[${s.map(formatDim).join(",")}]`;
}

export function formatType(t: TensorType): string {
  return `${t.dtype}${formatShape(t.shape)}`;
}

/** The symbols a dim mentions. */
export function dimSymbols(d: Dim): string[] {
  return typeof d === "number" ? [] : d.split("+").filter(isSymbol);
}

/** The value of a dim under bindings, or undefined when a symbol is unbound. */
export function evalDim(d: Dim, b: Bindings): number | undefined {
  if (typeof d === "number") return d;
  let sum = 0;
  for (const t of d.split("+")) {
    const v = isSymbol(t) ? b.get(t) : Number(t);
    if (v === undefined) return undefined;
    sum += v;
  }
  return sum;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Multiply two dims when both are known numbers; a symbolic product is not representable. */
export function productOf(dims: Shape): Dim | undefined {
  let n = 1;
  let sym: string | undefined;
  for (const d of dims) {
    if (typeof d === "number") n *= d;
    else if (sym === undefined) sym = d;
    else return undefined;
  }
  if (sym === undefined) return n;
  return n === 1 ? sym : undefined;
}

/** Numpy-style broadcasting of two shapes; a string explains a failure. */
export function broadcastShapes(a: Shape, b: Shape): Shape | string {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (dimEq(x, y) || y === 1) out.push(x);
    else if (x === 1) out.push(y);
    else return `cannot broadcast ${formatShape(a)} with ${formatShape(b)}`;
  }
  return out;
}
