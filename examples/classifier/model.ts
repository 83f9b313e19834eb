/** A small encoder-only sentiment classifier, written from scratch with the kiln DSL.
 *
 *  tokens ─ embed + positions ─ N pre-LN encoder layers ─ final norm ─ masked mean pool ─ head
 *
 *  The input is one right-padded token sequence and its `attention_mask` (1 for a real token,
 *  0 for padding, as in Hugging Face tokenizers). The mask does two jobs: self-attention never
 *  looks at a padded key, and the mean pool averages over the real positions only. So a padded
 *  token's id cannot change the result.
 *
 *  Weights are named like the state_dict of a PyTorch module holding `tok_emb` and `pos_emb`
 *  (nn.Embedding), `encoder` (nn.TransformerEncoder of nn.TransformerEncoderLayer with
 *  norm_first=True, activation="gelu", and a final norm) and `head` (nn.Linear). */
import {
  add,
  defineModel,
  div,
  embed,
  encoderLayer,
  layerNorm,
  learnedPositions,
  linear,
  mul,
  reshape,
  sinusoidalPositions,
  softmax,
  stack,
  sub,
  sum,
  type AttentionMask,
  type EncoderLayerParams,
  type LinearParams,
  type ModelBuilder,
  type NormParams,
  type Tensor,
} from "../../compiler/dsl/index.ts";

export type ClassifierConfig = {
  readonly vocab_size: number; // 1000 token ids; id 0 is the padding token
  readonly max_len: number; // 128: the longest sequence, rows of the learned position table
  readonly width: number; // 64: channels C (d_model)
  readonly heads: number; // 4 heads, each C / heads wide
  readonly layers: number; // 2 encoder layers
  readonly ffn: number; // 256: the feed-forward's hidden width F (4·C)
  readonly num_classes: number; // 2: negative, positive
  readonly eps: number; // 1e-5: layer norm epsilon
  readonly positions: string; // "learned" (a table, like BERT) or "sinusoidal" (fixed, §3.5)
};

export const defaults: ClassifierConfig = {
  vocab_size: 1000,
  max_len: 128,
  width: 64,
  heads: 4,
  layers: 2,
  ffn: 256,
  num_classes: 2,
  eps: 1e-5,
  positions: "learned",
};

/** nn.Linear: weight [out, in], y = x·Wᵀ + b. */
function linearParams(m: ModelBuilder, prefix: string, nIn: number, nOut: number): LinearParams {
  return {
    weight: m.param(`${prefix}.weight`, [nOut, nIn]),
    bias: m.param(`${prefix}.bias`, [nOut]),
    layout: "out_in",
  };
}

function norm(m: ModelBuilder, prefix: string, c: ClassifierConfig): NormParams {
  return {
    weight: m.param(`${prefix}.weight`, [c.width]),
    bias: m.param(`${prefix}.bias`, [c.width]),
    eps: c.eps,
  };
}

/** One nn.TransformerEncoderLayer: self-attention (q, k, v stacked in in_proj_weight [3C, C])
 *  and a GELU feed-forward, each behind its own layer norm. */
function encoderParams(m: ModelBuilder, i: number, c: ClassifierConfig): EncoderLayerParams {
  const p = `encoder.layers.${i}`;
  return {
    selfAttn: {
      qkv: {
        weight: m.param(`${p}.self_attn.in_proj_weight`, [3 * c.width, c.width]),
        bias: m.param(`${p}.self_attn.in_proj_bias`, [3 * c.width]),
        layout: "out_in",
      },
      out: linearParams(m, `${p}.self_attn.out_proj`, c.width, c.width),
      heads: c.heads,
    },
    norm1: norm(m, `${p}.norm1`, c),
    norm2: norm(m, `${p}.norm2`, c),
    ffn: {
      up: linearParams(m, `${p}.linear1`, c.width, c.ffn),
      down: linearParams(m, `${p}.linear2`, c.ffn, c.width),
      activation: "gelu", // exact, erf-based: torch's nn.GELU()
    },
  };
}

/** Token embedding plus a position signal. */
function embedTokens(m: ModelBuilder, tokens: Tensor, c: ClassifierConfig): Tensor {
  const x = embed(m.param("tok_emb.weight", [c.vocab_size, c.width]), tokens); // (T, C)
  const pos =
    c.positions === "learned"
      ? learnedPositions(m.param("pos_emb.weight", [c.max_len, c.width]), "T") // (T, C)
      : sinusoidalPositions(x, "T", c.width); // (T, C)
  return add(x, pos, "x"); // (T, C)
}

/** The mean of x's rows where keep = 1: Σₜ keepₜ·xₜ / Σₜ keepₜ. */
function maskedMean(x: Tensor, keep: Tensor): Tensor {
  const k = reshape(keep, ["T", 1], "keep"); // (T, 1)
  const total = sum(mul(x, k, "kept"), 0); // (1, C): padded rows add exact zeros
  const count = sum(k, 0); // (1, 1): the number of real tokens
  return div(total, count, "pooled"); // (1, C)
}

export default defineModel<ClassifierConfig>({
  name: "classifier",
  defaults,
  build(m, c) {
    m.require(
      c.width % c.heads === 0,
      `width (${c.width}) must be divisible by heads (${c.heads})`,
    );
    m.require(
      ["learned", "sinusoidal"].includes(c.positions),
      `unknown positions "${c.positions}"`,
    );
    m.bound("T", c.max_len, "the longest sequence max_len");
    const tokens = m.input("tokens", "i32", ["T"]);
    const attentionMask = m.input("attention_mask", "f32", ["T"]); // 1 = real token, 0 = padding
    const padding: AttentionMask = { keyPadding: sub(1, attentionMask, "is_pad") }; // (T): 1 where padded

    let x = embedTokens(m, tokens, c); // (T, C)
    const layers = Array.from({ length: c.layers }, (_, i) => encoderParams(m, i, c));
    x = stack(x, layers, (h, l) => encoderLayer(h, l, "pre", padding)); // (T, C)
    x = layerNorm(x, norm(m, "encoder.norm", c)); // (T, C)

    const pooled = maskedMean(x, attentionMask); // (1, C)
    const logits = linear(pooled, linearParams(m, "head", c.width, c.num_classes), "logits"); // (1, K)
    return [logits, softmax(logits, -1, "probs")]; // (1, K) each
  },
});
