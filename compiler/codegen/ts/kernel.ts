/** What a kernel generator makes: one function (its parameters, each with the argument the
 *  dispatch passes for it, a header comment and the statements), and the scope that renders a
 *  kernel's sizes and strides while recording the dims they use.
 *
 *  Calling convention: every operand a kernel reads or writes is a pair (array, offset): the
 *  typed array that holds its buffer (the arena, or the buffer's own array) and the element
 *  offset of the view's first element, which the dispatch computes (the buffer's place in the
 *  arena plus the view's offset). Strides and sizes are baked into the kernel; the symbolic dims
 *  it needs come last, as `d0`, `d1`, … (the session's names for them). */
import type { DType } from "../../ir/dtype.ts";
import type { Dim } from "../../ir/shape.ts";
import type { Kernel, Program, View } from "../../lower/program.ts";
import { symOfDim, type SymInt } from "../../lower/sym.ts";
import type { Helper } from "../helpers.ts";
import { renderSym, type DimVars } from "./source.ts";

/** What the dispatch passes for a parameter. */
export type Arg =
  /** The typed array holding the buffer. */
  | { readonly k: "data"; readonly buffer: number }
  /** The element offset of the view's first element in that array. */
  | { readonly k: "at"; readonly view: View }
  /** An expression over the dim variables. */
  | { readonly k: "expr"; readonly source: string }
  /** The weights a matmul kernel packed at load. */
  | { readonly k: "packed"; readonly kernel: string };

export interface Param {
  readonly name: string;
  readonly type: string;
  readonly arg: Arg;
}

export interface KernelFunction {
  readonly name: string;
  /** The function the dispatch calls when it is not `name`'s own: another kernel of the module
   *  whose code is the same (module.ts shares it; this kernel's source is then not emitted). */
  readonly callee?: string;
  /** The whole function, with its header comment. */
  readonly source: string;
  readonly params: readonly Param[];
  readonly helpers: ReadonlySet<Helper>;
  /** A function to run once at load, for a kernel that packs a weight (matmul). */
  readonly pack?: PackFunction;
  /** A kernel that can run over column ranges (a packed matmul): two optional parameters after
   *  `params`, colFrom and colTo, multiples of `cols` (colTo may be n) select its output columns,
   *  so threads can share them. `macsPerRow`: multiply-adds per output row (K·n). */
  readonly columns?: { readonly n: number; readonly cols: number; readonly macsPerRow: number };
}

export interface PackFunction {
  readonly name: string;
  /** As KernelFunction's: the pack function of the kernel whose code this one shares. */
  readonly callee?: string;
  readonly source: string;
  /** Its arguments: the weight's array and offset, and the memory to pack into. */
  readonly params: readonly Param[];
}

export const arrayType = (d: DType): string => (d === "i32" ? "Int32Array" : "Float32Array");

/** Renders one kernel's sizes and strides, remembering which dim variables they use. */
export class Scope {
  private readonly used = new Set<string>();

  constructor(
    readonly program: Program,
    readonly kernel: Kernel,
    private readonly dims: DimVars,
  ) {}

  sym(a: SymInt): string {
    for (const t of a) for (const s of t.syms) this.used.add(this.dims.get(s) ?? s);
    return renderSym(a, this.dims);
  }

  dim(d: Dim): string {
    return this.sym(symOfDim(d));
  }

  dtype(v: View): DType {
    return this.program.buffers[v.buffer].dtype;
  }

  /** The (array, offset) parameters of an operand. */
  operand(name: string, v: View): Param[] {
    return [
      { name, type: arrayType(this.dtype(v)), arg: { k: "data", buffer: v.buffer } },
      { name: `${name}_at`, type: "number", arg: { k: "at", view: v } },
    ];
  }

  /** The dim parameters, in the session's order; call after rendering everything. */
  dimParams(): Param[] {
    return [...this.dims.values()]
      .filter((v) => this.used.has(v))
      .map((v) => ({ name: v, type: "number", arg: { k: "expr", source: v } }));
  }
}

/** A function declaration from its parts. */
export function functionSource(
  name: string,
  doc: readonly string[],
  params: readonly Param[],
  body: readonly string[],
): string {
  const head =
    doc.length === 1 ? [`/** ${doc[0]} */`] : ["/**", ...doc.map((l) => ` * ${l}`), " */"];
  const sig = params.map((p) => `${p.name}: ${p.type}`).join(", ");
  return [
    ...head,
    `export function ${name}(${sig}): void {`,
    ...body.map((l) => `  ${l}`),
    "}",
    "",
  ].join("\n");
}

/** A kernel function from its doc, parameters and body; the scope's dim parameters come last. */
export function finish(
  s: Scope,
  doc: readonly string[],
  params: readonly Param[],
  body: readonly string[],
  helpers: KernelFunction["helpers"] = new Set(),
): KernelFunction {
  const all = [...params, ...s.dimParams()];
  return {
    name: s.kernel.name,
    params: all,
    helpers,
    source: functionSource(s.kernel.name, doc, all, body),
  };
}
