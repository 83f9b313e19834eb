/** A Program as text, one line per buffer and per kernel, for people and golden tests:
 *
 *    k7_matmul  matmul  step  %qkv_mm ← b4, b9 → b12 f32[T,72]  [matmul then acc]
 *
 *  A kernel that writes state besides its output names it after the output: a cached attention
 *  ends `→ b17 f32[T,24] (also b15, b16)  [attention 3 heads scale 0.35 causal, P cached]`.
 *  A view that is its buffer whole prints as `b4`; any other as `b4[T,24]+24·[72,1]` (shape,
 *  offset, strides in elements). */
import { formatExpr } from "../ir/expr.ts";
import { formatShape } from "../ir/shape.ts";
import { assertNever } from "../errors.ts";
import type { Buffer, KernelBody, Program, View } from "./program.ts";
import { formatSym } from "./sym.ts";
import { isWhole } from "./views.ts";

export function formatView(v: View, b: Buffer): string {
  if (isWhole(v, b.shape)) return `b${v.buffer}`;
  const off = v.offset.length ? `+${formatSym(v.offset)}` : "";
  return `b${v.buffer}${formatShape(v.shape)}${off}·[${v.strides.map(formatSym).join(",")}]`;
}

export function formatBody(b: KernelBody): string {
  switch (b.kind) {
    case "expr":
      return formatExpr(b.expr);
    case "copy":
    case "causal_mask":
    case "gather":
      return b.kind;
    case "masked_fill":
      return `masked_fill ${b.value}`;
    case "range":
      return `range from ${b.start}`;
    case "sinusoidal":
      return `sinusoidal ${b.dim}`;
    case "concat":
      return `concat axis ${b.axis}`;
    case "softmax":
      return `softmax axis ${b.axis} scale ${b.scale}${b.causal ? " causal" : ""}${b.masked ? " masked" : ""}`;
    case "layer_norm":
      return `layer_norm(${formatExpr(b.expr)}) eps ${b.eps}`;
    case "reduce":
      return `${b.mean ? "mean" : "sum"} axis ${b.axis}`;
    case "matmul":
      return `matmul${b.transposeB ? " bᵀ" : ""} then ${formatExpr(b.expr)}`;
    case "attention":
      return `attention ${b.heads} heads scale ${b.scale}${b.causal ? " causal" : ""}${b.masked ? " masked" : ""}`;
    case "attention_cached":
      return `attention ${b.heads} heads scale ${b.scale} causal, ${b.past} cached`;
    default:
      return assertNever(b, "kernel body");
  }
}

export function printProgram(p: Program): string {
  const lines = [
    `program @${p.name}  kv cache: ${
      p.kvCache.enabled
        ? `on (${p.kvCache.entries.length} attention(s), ${p.kvCache.past} cached rows of ${p.kvCache.capacity ?? "—"})`
        : `off (${p.kvCache.reason})`
    }`,
  ];
  for (const b of p.buffers)
    lines.push(
      `  b${b.id} ${b.role} ${b.phase} ${b.dtype}${formatShape(b.shape)} %${b.node}${b.name !== undefined ? ` "${b.name}"` : ""}`,
    );
  for (const k of p.kernels) {
    const ins = k.inputs.map((v) => formatView(v, p.buffers[v.buffer])).join(", ");
    const out = p.buffers[k.output];
    const also = k.alsoWrites.length
      ? ` (also ${k.alsoWrites.map((id) => `b${id}`).join(", ")})`
      : "";
    lines.push(
      `  ${k.name}  ${k.family}  ${k.phase}  %${k.node} ← ${ins || "()"} → b${k.output} ${out.dtype}${formatShape(out.shape)}${also}  [${formatBody(k.body)}]`,
    );
  }
  return lines.join("\n") + "\n";
}
