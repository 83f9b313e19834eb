/** GPT-2, exactly as Hugging Face's GPT2LMHeadModel computes it (Radford et al. 2019):
 *  learned positions, pre-LN blocks, one fused c_attn projection, GELU-tanh ("gelu_new"),
 *  a final ln_f and an LM head tied to the token embedding. Weights are named as in the Hugging
 *  Face checkpoint; Conv1D weights are stored [in, out]. */
import {
  add,
  defineModel,
  embed,
  feedForward,
  layerNorm,
  learnedPositions,
  linear,
  selfAttention,
  type AttentionParams,
  type FeedForwardParams,
  type ModelBuilder,
  type NormParams,
  type Tensor,
} from "../compiler/dsl/index.ts";

export type GPT2Config = {
  readonly vocab_size: number; // 50257 BPE tokens
  readonly n_positions: number; // 1024: the context length
  readonly n_embd: number; // 768: channels C
  readonly n_layer: number; // 12 blocks
  readonly n_head: number; // 12 heads, each C / n_head wide
  readonly layer_norm_epsilon: number; // 1e-5
};

/** GPT-2 small (124M parameters). */
export const defaults: GPT2Config = {
  vocab_size: 50257,
  n_positions: 1024,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  layer_norm_epsilon: 1e-5,
};

function norm(m: ModelBuilder, prefix: string, c: GPT2Config): NormParams {
  return {
    weight: m.param(`${prefix}.weight`, [c.n_embd]),
    bias: m.param(`${prefix}.bias`, [c.n_embd]),
    eps: c.layer_norm_epsilon,
  };
}

function conv1d(m: ModelBuilder, prefix: string, nIn: number, nOut: number) {
  return {
    weight: m.param(`${prefix}.weight`, [nIn, nOut]),
    bias: m.param(`${prefix}.bias`, [nOut]),
    layout: "in_out" as const,
  };
}

function attentionParams(m: ModelBuilder, i: number, c: GPT2Config): AttentionParams {
  return {
    qkv: conv1d(m, `h.${i}.attn.c_attn`, c.n_embd, 3 * c.n_embd),
    out: conv1d(m, `h.${i}.attn.c_proj`, c.n_embd, c.n_embd),
    heads: c.n_head,
  };
}

function mlpParams(m: ModelBuilder, i: number, c: GPT2Config): FeedForwardParams {
  return {
    up: conv1d(m, `h.${i}.mlp.c_fc`, c.n_embd, 4 * c.n_embd),
    down: conv1d(m, `h.${i}.mlp.c_proj`, 4 * c.n_embd, c.n_embd),
    activation: "gelu_tanh",
  };
}

function block(m: ModelBuilder, x: Tensor, i: number, c: GPT2Config): Tensor {
  x = add(
    x,
    selfAttention(layerNorm(x, norm(m, `h.${i}.ln_1`, c)), attentionParams(m, i, c), {
      causal: true,
    }),
    "res",
  ); // (T, C)
  x = add(x, feedForward(layerNorm(x, norm(m, `h.${i}.ln_2`, c)), mlpParams(m, i, c)), "res"); // (T, C)
  return x;
}

export default defineModel<GPT2Config>({
  name: "gpt2",
  defaults,
  build(m, c) {
    m.require(
      c.n_embd % c.n_head === 0,
      `gpt2: n_embd (${c.n_embd}) must be divisible by n_head (${c.n_head})`,
    );
    m.bound("T", c.n_positions, "the context length n_positions");
    const tokens = m.input("tokens", "i32", ["T"]);
    const wte = m.param("wte.weight", [c.vocab_size, c.n_embd]);
    const wpe = m.param("wpe.weight", [c.n_positions, c.n_embd]);
    let x = add(embed(wte, tokens), learnedPositions(wpe, "T"), "x"); // (T, C)
    for (let i = 0; i < c.n_layer; i++) x = block(m, x, i, c); // (T, C)
    x = layerNorm(x, norm(m, "ln_f", c)); // (T, C)
    return linear(x, { weight: wte, layout: "out_in" }, "logits"); // (T, vocab): tied to wte
  },
});
