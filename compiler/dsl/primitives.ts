/** One DSL function per IR op. Each checks its operands at once (see ModelBuilder.node); axes may
 *  be negative, counted from the end as in PyTorch. A number where a tensor is expected becomes a
 *  scalar constant. */
import { fail } from "../errors.ts";
import type { Dim, Shape } from "../ir/shape.ts";
import { callSite } from "./call-site.ts";
import type { Tensor } from "./builder.ts";

type Operand = Tensor | number;

function pair(a: Operand, b: Operand, op: string): [Tensor, Tensor] {
  if (typeof a !== "number" && typeof b !== "number") return [a, b];
  if (typeof a !== "number") return [a, a.builder.scalar(b as number, a)];
  if (typeof b !== "number") return [b.builder.scalar(a, b), b];
  fail("dsl", callSite() ?? "", `${op}: at least one operand must be a tensor, got ${a} and ${b}`);
}

function axisOf(x: Tensor, axis: number): number {
  const r = x.type.shape.length;
  return axis < 0 && axis >= -r ? axis + r : axis;
}

export const add = (a: Operand, b: Operand, hint?: string): Tensor => {
  const [x, y] = pair(a, b, "add");
  return x.builder.node("add", {}, [x, y], hint);
};
export const sub = (a: Operand, b: Operand, hint?: string): Tensor => {
  const [x, y] = pair(a, b, "sub");
  return x.builder.node("sub", {}, [x, y], hint);
};
export const mul = (a: Operand, b: Operand, hint?: string): Tensor => {
  const [x, y] = pair(a, b, "mul");
  return x.builder.node("mul", {}, [x, y], hint);
};
export const div = (a: Operand, b: Operand, hint?: string): Tensor => {
  const [x, y] = pair(a, b, "div");
  return x.builder.node("div", {}, [x, y], hint);
};

export const neg = (x: Tensor): Tensor => x.builder.node("neg", {}, [x]);
export const exp = (x: Tensor): Tensor => x.builder.node("exp", {}, [x]);
export const sqrt = (x: Tensor): Tensor => x.builder.node("sqrt", {}, [x]);
export const rsqrt = (x: Tensor): Tensor => x.builder.node("rsqrt", {}, [x]);
export const tanh = (x: Tensor): Tensor => x.builder.node("tanh", {}, [x]);
export const relu = (x: Tensor): Tensor => x.builder.node("relu", {}, [x]);
/** GELU with the exact erf, as torch's default `nn.GELU()`. */
export const gelu = (x: Tensor): Tensor => x.builder.node("gelu", {}, [x]);
/** GELU's tanh approximation, `gelu_new` in GPT-2. */
export const geluTanh = (x: Tensor): Tensor => x.builder.node("gelu_tanh", {}, [x]);

export const matmul = (
  a: Tensor,
  b: Tensor,
  opts: { transposeB?: boolean; hint?: string } = {},
): Tensor => a.builder.node("matmul", { transposeB: opts.transposeB ?? false }, [a, b], opts.hint);

export const transpose = (x: Tensor, perm: readonly number[], hint?: string): Tensor =>
  x.builder.node("transpose", { perm: [...perm] }, [x], hint);

export const reshape = (x: Tensor, shape: Shape, hint?: string): Tensor =>
  x.builder.node("reshape", { shape: [...shape] }, [x], hint);

export const slice = (
  x: Tensor,
  axis: number,
  start: number,
  size: number,
  hint?: string,
): Tensor => x.builder.node("slice", { axis: axisOf(x, axis), start, size }, [x], hint);

export const gather = (table: Tensor, ids: Tensor, hint?: string): Tensor =>
  table.builder.node("gather", {}, [table, ids], hint);

/** i32[size]: start, start+1, … — positions 0..T−1 by default. */
export const range = (like: Tensor, size: Dim, start: Dim = 0, hint = "pos"): Tensor =>
  like.builder.node("range", { start, size }, [], hint);

export const sinusoidal = (pos: Tensor, dim: number, hint = "pe"): Tensor =>
  pos.builder.node("sinusoidal", { dim }, [pos], hint);

export const softmax = (x: Tensor, axis = -1, hint?: string): Tensor =>
  x.builder.node("softmax", { axis: axisOf(x, axis) }, [x], hint);

export const causalMask = (x: Tensor): Tensor => x.builder.node("causal_mask", {}, [x]);

export const maskedFill = (x: Tensor, mask: Tensor, value: number): Tensor =>
  x.builder.node("masked_fill", { value }, [x, mask]);

export const layerNormOp = (
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  eps: number,
  hint?: string,
): Tensor => x.builder.node("layer_norm", { eps }, [x, weight, bias], hint);

export const sum = (x: Tensor, axis: number): Tensor =>
  x.builder.node("reduce_sum", { axis: axisOf(x, axis) }, [x]);
export const mean = (x: Tensor, axis: number): Tensor =>
  x.builder.node("reduce_mean", { axis: axisOf(x, axis) }, [x]);
