/** Transformer building blocks, composed from the primitives. Shapes are per sequence (batch 1):
 *  activations are [T, C]; attention works on heads [H, T, D] with C = H·D. */
import type { Dim } from "../ir/shape.ts";
import type { Tensor } from "./builder.ts";
import * as p from "./primitives.ts";

/** A dense layer's weights. `out_in` is nn.Linear's [out, in] (computes x·Wᵀ); `in_out` is
 *  GPT-2's Conv1D [in, out] (computes x·W). */
export interface LinearParams {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  readonly layout: "out_in" | "in_out";
}

export interface NormParams {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly eps: number;
}

export type Activation = "relu" | "gelu" | "gelu_tanh";

export interface FeedForwardParams {
  readonly up: LinearParams;
  readonly down: LinearParams;
  readonly activation: Activation;
}

/** Self- or cross-attention with one merged [q;k;v] projection (GPT-2's c_attn, torch's
 *  in_proj_weight) and an output projection. */
export interface AttentionParams {
  readonly qkv: LinearParams;
  readonly out: LinearParams;
  readonly heads: number;
}

export interface AttentionMask {
  /** Key j is hidden from query i when j > i + (Tk − Tq). */
  readonly causal?: boolean;
  /** [Tk], non-zero where the key is padding. A query whose keys are all hidden attends to
   *  nothing and gets zeros (PyTorch gives NaN there). */
  readonly keyPadding?: Tensor;
}

export const embed = (table: Tensor, ids: Tensor, hint = "emb"): Tensor =>
  p.gather(table, ids, hint); // (T, C)

/** Learned positions: rows 0..T−1 of the table. */
export function learnedPositions(table: Tensor, length: Dim): Tensor {
  const rows = table.type.shape[0];
  if (typeof length === "string" && typeof rows === "number")
    table.builder.impliedBound(length, rows, `the positional table's ${rows} rows`);
  return p.gather(table, p.range(table, length), "pos_emb"); // (T, C)
}

/** "Attention Is All You Need" §3.5: sin on even channels, cos on odd. */
export function sinusoidalPositions(like: Tensor, length: Dim, dim: number): Tensor {
  return p.sinusoidal(p.range(like, length), dim); // (T, dim)
}

export function linear(x: Tensor, w: LinearParams, hint?: string): Tensor {
  // The value named by the hint is the layer's result: the bias add when there is one.
  const y = p.matmul(x, w.weight, {
    transposeB: w.layout === "out_in",
    hint: w.bias && hint ? `${hint}_mm` : hint,
  });
  return w.bias ? p.add(y, w.bias, hint) : y;
}

export const layerNorm = (x: Tensor, n: NormParams, hint = "ln"): Tensor =>
  p.layerNormOp(x, n.weight, n.bias, n.eps, hint);

export function activation(x: Tensor, a: Activation): Tensor {
  switch (a) {
    case "relu":
      return p.relu(x);
    case "gelu":
      return p.gelu(x);
    case "gelu_tanh":
      return p.geluTanh(x);
  }
}

export function feedForward(x: Tensor, f: FeedForwardParams): Tensor {
  const h = activation(linear(x, f.up, "ff_up"), f.activation); // (T, F)
  return linear(h, f.down, "ff_down"); // (T, C)
}

function headDim(x: Tensor, heads: number): number {
  const c = x.type.shape[x.type.shape.length - 1];
  x.builder.require(typeof c === "number", `attention: channel dim ${c} must be a number`);
  x.builder.require(
    Number.isInteger(heads) && heads > 0 && (c as number) % heads === 0,
    `attention: ${c} channels do not split into ${heads} heads`,
  );
  return (c as number) / heads;
}

/** [T, C] → [H, T, D] */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const d = headDim(x, heads);
  const t = x.type.shape[0];
  return p.transpose(p.reshape(x, [t, heads, d]), [1, 0, 2], "heads"); // (H, T, D)
}

/** [H, T, D] → [T, C] */
export function mergeHeads(x: Tensor): Tensor {
  const [h, t, d] = x.type.shape;
  const merged = p.transpose(x, [1, 0, 2]); // (T, H, D)
  return p.reshape(merged, [t, (h as number) * (d as number)], "merged"); // (T, C)
}

/** softmax(q·kᵀ/√D + mask)·v over heads: q [H,Tq,D], k and v [H,Tk,D] → [H,Tq,D]. */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: AttentionMask = {},
): Tensor {
  const d = q.type.shape[q.type.shape.length - 1] as number;
  let s = p.mul(p.matmul(q, k, { transposeB: true, hint: "scores" }), 1 / Math.sqrt(d), "scores"); // (H, Tq, Tk)
  if (mask.causal) s = p.causalMask(s);
  if (mask.keyPadding) {
    const tk = mask.keyPadding.type.shape[0];
    s = p.maskedFill(s, p.reshape(mask.keyPadding, [1, 1, tk]), -Infinity);
  }
  return p.matmul(p.softmax(s, -1, "probs"), v, { hint: "attn" }); // (H, Tq, D)
}

/** q [Tq,C], k and v [Tk,C] → [Tq,C], heads merged (before the output projection). */
export function multiHeadAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  heads: number,
  mask: AttentionMask = {},
): Tensor {
  const o = scaledDotProductAttention(
    splitHeads(q, heads),
    splitHeads(k, heads),
    splitHeads(v, heads),
    mask,
  );
  return mergeHeads(o); // (Tq, C)
}

/** The i-th third (0 = q, 1 = k, 2 = v) of a merged projection, or of its weight. */
function third(w: LinearParams, i: number): LinearParams {
  const outAxis = w.layout === "out_in" ? 0 : 1;
  const n = (w.weight.type.shape[outAxis] as number) / 3;
  return {
    layout: w.layout,
    weight: p.slice(w.weight, outAxis, i * n, n, "w_part"),
    ...(w.bias ? { bias: p.slice(w.bias, 0, i * n, n, "b_part") } : {}),
  };
}

/** Self-attention: one merged projection of x, split into q, k, v. */
export function selfAttention(x: Tensor, a: AttentionParams, mask: AttentionMask = {}): Tensor {
  const qkv = linear(x, a.qkv, "qkv"); // (T, 3C)
  const c = (qkv.type.shape[1] as number) / 3;
  x.builder.require(
    Number.isInteger(c),
    `attention: merged projection width ${qkv.type.shape[1]} is not 3·C`,
  );
  const [q, k, v] = [0, 1, 2].map((i) => p.slice(qkv, 1, i * c, c, "qkv"[i])); // (T, C) each
  return linear(multiHeadAttention(q, k, v, a.heads, mask), a.out, "attn_out"); // (T, C)
}

/** Cross-attention: queries from x, keys and values from the encoder's memory. */
export function crossAttention(
  x: Tensor,
  memory: Tensor,
  a: AttentionParams,
  mask: AttentionMask = {},
): Tensor {
  const q = linear(x, third(a.qkv, 0), "q"); // (T, C)
  const k = linear(memory, third(a.qkv, 1), "k"); // (S, C)
  const v = linear(memory, third(a.qkv, 2), "v"); // (S, C)
  return linear(multiHeadAttention(q, k, v, a.heads, mask), a.out, "xattn_out"); // (T, C)
}

export type NormPlacement = "pre" | "post";

export interface EncoderLayerParams {
  readonly selfAttn: AttentionParams;
  readonly norm1: NormParams;
  readonly norm2: NormParams;
  readonly ffn: FeedForwardParams;
}

export interface DecoderLayerParams extends EncoderLayerParams {
  readonly crossAttn: AttentionParams;
  readonly norm3: NormParams;
}

/** x + f(norm(x)) when pre-norm; norm(x + f(x)) when post-norm (the original Transformer). */
function sublayer(
  x: Tensor,
  n: NormParams,
  place: NormPlacement,
  f: (h: Tensor) => Tensor,
): Tensor {
  return place === "pre"
    ? p.add(x, f(layerNorm(x, n)), "res")
    : layerNorm(p.add(x, f(x), "res"), n);
}

export function encoderLayer(
  x: Tensor,
  l: EncoderLayerParams,
  place: NormPlacement,
  mask: AttentionMask = {},
): Tensor {
  x = sublayer(x, l.norm1, place, (h) => selfAttention(h, l.selfAttn, mask)); // (S, C)
  return sublayer(x, l.norm2, place, (h) => feedForward(h, l.ffn)); // (S, C)
}

export function decoderLayer(
  x: Tensor,
  memory: Tensor,
  l: DecoderLayerParams,
  place: NormPlacement,
  masks: { self?: AttentionMask; memory?: AttentionMask } = {},
): Tensor {
  x = sublayer(x, l.norm1, place, (h) => selfAttention(h, l.selfAttn, masks.self)); // (T, C)
  x = sublayer(x, l.norm2, place, (h) => crossAttention(h, memory, l.crossAttn, masks.memory)); // (T, C)
  return sublayer(x, l.norm3, place, (h) => feedForward(h, l.ffn)); // (T, C)
}

/** Applies layers in order: the encoder or decoder stack. */
export function stack<P>(
  x: Tensor,
  layers: readonly P[],
  f: (x: Tensor, layer: P, i: number) => Tensor,
): Tensor {
  return layers.reduce((h, l, i) => f(h, l, i), x);
}
