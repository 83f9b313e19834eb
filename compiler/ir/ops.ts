/** The op table: the only place an op is declared.
 *  Each op states its attributes (with a schema the text parser checks), its type rule, and its
 *  float64 reference semantics. Adding an op to `Attrs` breaks the build until `OPS` handles it. */
import type { NDArray } from "./ndarray.ts";
import type { Bindings, Dim, Shape, TensorType } from "./shape.ts";
import { ELEMENTWISE, type ElementwiseOp } from "./ops-elementwise.ts";
import { STRUCTURAL } from "./ops-structural.ts";
import { NN } from "./ops-nn.ts";
import { FUSED } from "./ops-fused.ts";
import type { Expr } from "./expr.ts";

type NoAttrs = Record<string, never>;

export interface Attrs {
  // sources
  input: { name: string }; // a graph input fed at run time (token ids, masks)
  param: { name: string }; // a weight, named as in the checkpoint
  const: { value: number }; // a constant filled to its declared type (usually a scalar)
  range: { start: Dim; size: Dim }; // i32[size]: start, start+1, …
  // elementwise (numpy broadcasting)
  add: NoAttrs;
  sub: NoAttrs;
  mul: NoAttrs;
  div: NoAttrs;
  neg: NoAttrs;
  exp: NoAttrs;
  sqrt: NoAttrs;
  rsqrt: NoAttrs;
  tanh: NoAttrs;
  relu: NoAttrs;
  gelu: NoAttrs; // x·Φ(x), exact (erf)
  gelu_tanh: NoAttrs; // the tanh approximation ("gelu_new" in GPT-2)
  // structure
  matmul: { transposeB: boolean }; // [..,M,K] × [..,K,N] (or [..,N,K] when transposeB)
  transpose: { perm: readonly number[] };
  reshape: { shape: Shape };
  slice: { axis: number; start: number; size: number }; // start < 0 counts from the end
  gather: NoAttrs; // (table[V,..], ids i32[..]) → [..ids, ..]
  concat: { axis: number }; // (xs…) joined along the axis
  // neural-network ops
  sinusoidal: { dim: number }; // (pos i32[T]) → f32[T,dim], "Attention Is All You Need" §3.5
  softmax: { axis: number }; // a row of all −∞ gives zeros
  causal_mask: NoAttrs; // [..,Tq,Tk]: −∞ where key j > query i + (Tk − Tq)
  masked_fill: { value: number }; // (x, mask): value where mask ≠ 0
  layer_norm: { eps: number }; // (x, γ, β) over the last axis
  reduce_sum: { axis: number }; // keeps the axis with size 1
  reduce_mean: { axis: number };
  // fused ops, made by passes (ops-fused.ts)
  map: { expr: Expr }; // an elementwise expression of $0, $1, … (broadcast)
  matmul_epilogue: { transposeB: boolean; expr: Expr }; // (a, b, extras…): expr(acc, extras)
  layer_norm_map: { eps: number; expr: Expr }; // (γ, β, xs…): layer_norm(expr(xs))
  scale_softmax: { scale: number; causal: boolean }; // (x, [key mask]) over the last axis
  attention: { heads: number; scale: number; causal: boolean }; // (q, k, v, [key mask]) [T,C]
}

export type OpName = keyof Attrs;

/** How an attribute is written in text IR and checked when parsed. */
export type AttrKind = "int" | "float" | "bool" | "string" | "dim" | "ints" | "dims" | "expr";

export interface EvalContext {
  readonly node: string;
  readonly bindings: Bindings;
  input(name: string): NDArray;
  param(name: string): NDArray;
}

export interface OpDecl<O extends OpName> {
  /** Number of operands: exact, or [min, max] for ops that take a list (max may be Infinity). */
  readonly arity: number | readonly [number, number];
  readonly attrs: { readonly [K in keyof Attrs[O]]-?: AttrKind };
  /** Result type from operand types, or a message saying why they don't fit. Source ops
   *  (input, param, const) return the declared type after checking it. */
  readonly type: (
    a: Attrs[O],
    ins: readonly TensorType[],
    declared?: TensorType,
  ) => TensorType | string;
  /** float64 reference semantics; `out` is the result shape with symbols bound. */
  readonly eval: (
    a: Attrs[O],
    ins: readonly NDArray[],
    out: readonly number[],
    ctx: EvalContext,
  ) => NDArray;
}

export function arityOk(decl: { readonly arity: OpDecl<OpName>["arity"] }, n: number): boolean {
  return typeof decl.arity === "number"
    ? n === decl.arity
    : n >= decl.arity[0] && n <= decl.arity[1];
}

export function formatArity(a: OpDecl<OpName>["arity"]): string {
  if (typeof a === "number") return String(a);
  return a[1] === Infinity ? `${a[0]} or more` : `${a[0]} to ${a[1]}`;
}

export type OpTable = { readonly [O in OpName]: OpDecl<O> };

export const OPS: OpTable = { ...ELEMENTWISE, ...STRUCTURAL, ...NN, ...FUSED };

export const OP_NAMES = Object.keys(OPS) as OpName[];

export function isOpName(s: string): s is OpName {
  return Object.prototype.hasOwnProperty.call(OPS, s);
}

export function isElementwise(op: OpName): op is ElementwiseOp {
  return Object.prototype.hasOwnProperty.call(ELEMENTWISE, op);
}

/** Attributes of some op, for code that handles every op alike (printer, parser). */
export type AnyAttrs = Attrs[OpName];
