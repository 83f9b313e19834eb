/** The encoder–decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017), as the
 *  PyTorch translation tutorial's `Seq2SeqTransformer` builds it on `nn.Transformer`: token
 *  embeddings × √emb_size, sinusoidal positions, post-LN layers with ReLU feed-forward, final
 *  encoder and decoder norms, a causal decoder, cross-attention, and a `generator` linear.
 *  Weights are named as in the module's state_dict; nn.Linear weights are [out, in]. */
import {
  add,
  decoderLayer,
  defineModel,
  embed,
  encoderLayer,
  layerNorm,
  linear,
  mul,
  sinusoidalPositions,
  stack,
  type AttentionParams,
  type DecoderLayerParams,
  type EncoderLayerParams,
  type ModelBuilder,
  type NormParams,
  type Tensor,
} from "../compiler/dsl/index.ts";

export type Seq2SeqConfig = {
  readonly num_encoder_layers: number; // 3
  readonly num_decoder_layers: number; // 3
  readonly emb_size: number; // 512: d_model
  readonly nhead: number; // 8
  readonly src_vocab_size: number; // source vocabulary
  readonly tgt_vocab_size: number; // target vocabulary
  readonly dim_feedforward: number; // 512
  readonly max_len: number; // 5000: rows of the tutorial's positional table
};

/** The tutorial's hyper-parameters (its vocabularies come from Multi30k; 10000 stands in). */
export const defaults: Seq2SeqConfig = {
  num_encoder_layers: 3,
  num_decoder_layers: 3,
  emb_size: 512,
  nhead: 8,
  src_vocab_size: 10000,
  tgt_vocab_size: 10000,
  dim_feedforward: 512,
  max_len: 5000,
};

const EPS = 1e-5; // nn.Transformer's layer_norm_eps

function linearParams(m: ModelBuilder, prefix: string, nIn: number, nOut: number) {
  return {
    weight: m.param(`${prefix}.weight`, [nOut, nIn]),
    bias: m.param(`${prefix}.bias`, [nOut]),
    layout: "out_in" as const,
  };
}

function norm(m: ModelBuilder, prefix: string, e: number): NormParams {
  return {
    weight: m.param(`${prefix}.weight`, [e]),
    bias: m.param(`${prefix}.bias`, [e]),
    eps: EPS,
  };
}

/** nn.MultiheadAttention: in_proj_weight [3E, E] holds q, k, v stacked. */
function mha(m: ModelBuilder, prefix: string, c: Seq2SeqConfig): AttentionParams {
  const e = c.emb_size;
  return {
    qkv: {
      weight: m.param(`${prefix}.in_proj_weight`, [3 * e, e]),
      bias: m.param(`${prefix}.in_proj_bias`, [3 * e]),
      layout: "out_in",
    },
    out: linearParams(m, `${prefix}.out_proj`, e, e),
    heads: c.nhead,
  };
}

function encoderParams(m: ModelBuilder, i: number, c: Seq2SeqConfig): EncoderLayerParams {
  const p = `transformer.encoder.layers.${i}`;
  return {
    selfAttn: mha(m, `${p}.self_attn`, c),
    norm1: norm(m, `${p}.norm1`, c.emb_size),
    norm2: norm(m, `${p}.norm2`, c.emb_size),
    ffn: {
      up: linearParams(m, `${p}.linear1`, c.emb_size, c.dim_feedforward),
      down: linearParams(m, `${p}.linear2`, c.dim_feedforward, c.emb_size),
      activation: "relu",
    },
  };
}

function decoderParams(m: ModelBuilder, i: number, c: Seq2SeqConfig): DecoderLayerParams {
  const p = `transformer.decoder.layers.${i}`;
  return {
    selfAttn: mha(m, `${p}.self_attn`, c),
    crossAttn: mha(m, `${p}.multihead_attn`, c),
    norm1: norm(m, `${p}.norm1`, c.emb_size),
    norm2: norm(m, `${p}.norm2`, c.emb_size),
    norm3: norm(m, `${p}.norm3`, c.emb_size),
    ffn: {
      up: linearParams(m, `${p}.linear1`, c.emb_size, c.dim_feedforward),
      down: linearParams(m, `${p}.linear2`, c.dim_feedforward, c.emb_size),
      activation: "relu",
    },
  };
}

/** TokenEmbedding + PositionalEncoding: embedding × √E plus the sinusoid table's first rows. */
function embedTokens(
  m: ModelBuilder,
  ids: Tensor,
  table: string,
  vocab: number,
  len: string,
  c: Seq2SeqConfig,
): Tensor {
  const e = embed(m.param(table, [vocab, c.emb_size]), ids); // (len, E)
  return add(mul(e, Math.sqrt(c.emb_size)), sinusoidalPositions(e, len, c.emb_size), "x"); // (len, E)
}

export default defineModel<Seq2SeqConfig>({
  name: "seq2seq",
  defaults,
  build(m, c) {
    m.require(
      c.emb_size % c.nhead === 0,
      `seq2seq: emb_size (${c.emb_size}) must be divisible by nhead (${c.nhead})`,
    );
    m.require(
      c.emb_size % 2 === 0,
      `seq2seq: emb_size (${c.emb_size}) must be even for the sinusoidal encoding`,
    );
    m.bound("S", c.max_len, "the positional table's max_len");
    m.bound("T", c.max_len, "the positional table's max_len");
    const src = m.input("src_tokens", "i32", ["S"]);
    const tgt = m.input("tokens", "i32", ["T"]);

    const encoderLayers = Array.from({ length: c.num_encoder_layers }, (_, i) =>
      encoderParams(m, i, c),
    );
    let memory = embedTokens(m, src, "src_tok_emb.embedding.weight", c.src_vocab_size, "S", c); // (S, E)
    memory = stack(memory, encoderLayers, (x, l) => encoderLayer(x, l, "post")); // (S, E)
    memory = layerNorm(memory, norm(m, "transformer.encoder.norm", c.emb_size), "memory"); // (S, E)

    const decoderLayers = Array.from({ length: c.num_decoder_layers }, (_, i) =>
      decoderParams(m, i, c),
    );
    let x = embedTokens(m, tgt, "tgt_tok_emb.embedding.weight", c.tgt_vocab_size, "T", c); // (T, E)
    x = stack(x, decoderLayers, (h, l) =>
      decoderLayer(h, memory, l, "post", { self: { causal: true } }),
    ); // (T, E)
    x = layerNorm(x, norm(m, "transformer.decoder.norm", c.emb_size)); // (T, E)
    return linear(x, linearParams(m, "generator", c.emb_size, c.tgt_vocab_size), "logits"); // (T, tgt_vocab)
  },
});
