/** The map family as WGSL: one invocation per output element. The output is written row-major;
 *  each operand is read through its view's strides (pre-broadcast operands have stride 0 where
 *  they repeat). Axes are merged where every view's strides chain (`coalesce`), so a contiguous
 *  elementwise kernel decomposes its index into one or two coordinates only. Each body computes
 *  what the Program interpreter's (compiler/lower/kernels-map.ts) does, in f32. */
import type { Expr } from "../../ir/expr.ts";
import type { KernelBody, View } from "../../lower/program.ts";
import { symProduct, type SymInt } from "../../lower/sym.ts";
import { fail } from "../../errors.ts";
import { renderExpr } from "../expr-source.ts";
import { coalesce, rowMajor } from "../ts/source.ts";
import { atom, plus, type WgslKernel, type WgslScope } from "./kernel.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

/** The kernel's output as a row-major view of its whole buffer. */
export function outputView(s: WgslScope): View {
  const b = s.program.buffers[s.kernel.output];
  return { buffer: b.id, offset: [], shape: b.shape, strides: rowMajor(b.shape) };
}

export interface Elementwise {
  /** Elements in the walk (the output's element count). */
  readonly count: SymInt;
  /** Statements that bind `i` (this invocation's element) and return when it is past the end,
   *  then the coordinates `c0, c1, …` of the merged axes. */
  readonly lines: readonly string[];
  /** Per view (in the order given), the source of its element index at `i`. */
  readonly index: readonly string[];
}

/** One invocation per element of `shape`, walking `views` together: the invocation's element
 *  `i = wg * size + lid`, its coordinates on the merged axes, each view's element index. */
export function elementwise(
  s: WgslScope,
  shape: View["shape"],
  views: readonly View[],
  workgroupSize: number,
): Elementwise {
  const count = symProduct(shape);
  const nest = coalesce(
    shape,
    views.map((v) => v.strides),
  );
  const at = views.map((v) => s.view(v).at);
  const sizes = nest.sizes.map((x) => s.sym(x));
  const lines = [
    `let i = wg * ${workgroupSize}u + lid;`,
    `if (i >= ${s.sym(count)}) {`,
    `  return;`,
    `}`,
  ];
  // Coordinates, innermost axis fastest: c_k = (i / Π sizes after k) % size_k.
  const coords: string[] = [];
  let rest = "i";
  for (let k = sizes.length - 1; k >= 0; k--) {
    if (k === 0) {
      coords[k] = rest;
      break;
    }
    lines.push(`let c${k} = ${atom(rest)} % ${atom(sizes[k])};`);
    coords[k] = `c${k}`;
    const next = `r${k}`;
    lines.push(`let ${next} = ${atom(rest)} / ${atom(sizes[k])};`);
    rest = next;
  }
  const index = views.map((_, v) =>
    coords.reduce((acc, c, k) => plus(acc, c, s.sym(nest.strides[v][k])), at[v]),
  );
  return { count, lines, index };
}

/** An operand's element as an f32 value. */
function readF32(s: WgslScope, buffer: number, index: string): string {
  const r = s.read(buffer, index);
  return s.elem(buffer) === "i32" ? `f32(${r})` : r;
}

/** A value of the output's type. */
function toOutput(s: WgslScope, value: string): string {
  return s.elem(s.kernel.output) === "i32" ? `i32(${value})` : value;
}

const render = (e: Expr, input: (i: number) => string) =>
  renderExpr(e, { target: "wgsl", input, temp: "t" });

/** out[i] = expr(x0[i], x1[i], …) */
export function mapExpr(s: WgslScope, b: Body<"expr">, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const ins = s.kernel.inputs;
  const size = s.workgroupSize();
  const walk = elementwise(s, out.shape, [out, ...ins], size);
  const r = render(b.expr, (i) => readF32(s, ins[i].buffer, walk.index[i + 1]));
  return s.finish({
    doc,
    workgroupSize: size,
    workgroups: { count: walk.count, per: size },
    body: [...walk.lines, ...r.temps, s.write(out.buffer, walk.index[0], toOutput(s, r.value))],
    helpers: r.helpers,
  });
}

export const copy = (s: WgslScope, _doc: readonly string[]): WgslKernel => notYet(s, "copy");
export const maskedFill = (
  s: WgslScope,
  _b: Body<"masked_fill">,
  _doc: readonly string[],
): WgslKernel => notYet(s, "masked_fill");
export const causalMask = (s: WgslScope, _doc: readonly string[]): WgslKernel =>
  notYet(s, "causal_mask");
export const range = (s: WgslScope, _b: Body<"range">, _doc: readonly string[]): WgslKernel =>
  notYet(s, "range");
export const sinusoidal = (
  s: WgslScope,
  _b: Body<"sinusoidal">,
  _doc: readonly string[],
): WgslKernel => notYet(s, "sinusoidal");
export const concat = (s: WgslScope, _b: Body<"concat">, _doc: readonly string[]): WgslKernel =>
  notYet(s, "concat");
export const gather = (s: WgslScope, _doc: readonly string[]): WgslKernel => notYet(s, "gather");

/** Until each family's generator lands. */
export function notYet(s: WgslScope, kind: KernelBody["kind"]): never {
  return fail("not-built", s.kernel.name, `the WGSL backend has no ${kind} kernel yet`);
}
