/** The two reference models at test size, and the attention core fused by hand (so the KV-cache
 *  tests do not depend on which passes the default pipeline holds today). */
import { buildGraph } from "../../../compiler/dsl/model.ts";
import { nodeData, operands, topoOrder, type Graph } from "../../../compiler/ir/graph.ts";
import { verify } from "../../../compiler/ir/verify.ts";
import {
  draft,
  freeze,
  insert,
  removeDead,
  replaceUses,
} from "../../../compiler/passes/rewrite.ts";
import gpt2 from "../../../models/gpt2.ts";
import seq2seq from "../../../models/seq2seq.ts";

export const gpt2Graph = (nLayer = 2): Graph =>
  buildGraph(gpt2, { vocab_size: 97, n_positions: 16, n_embd: 24, n_layer: nLayer, n_head: 3 });

export const seq2seqGraph = (layers = 2, decoderLayers = layers): Graph =>
  buildGraph(seq2seq, {
    num_encoder_layers: layers,
    num_decoder_layers: decoderLayers,
    emb_size: 24,
    nhead: 3,
    src_vocab_size: 41,
    tgt_vocab_size: 37,
    dim_feedforward: 40,
  });

export const BINDINGS: ReadonlyMap<string, number> = new Map([
  ["T", 5],
  ["S", 7],
]);

/** reshape(transpose(matmul(softmax([causal_mask](mul(matmul(qh, khᵀ), c))), vh))) as the DSL
 *  writes it, with xh = transpose(reshape(x)), becomes attention(q, k, v). */
export function fuseAttentionByHand(g: Graph): Graph {
  const d = draft(g);
  const op = (k: string) => nodeData(g, k).op;
  const arg = (k: string, i = 0) => operands(g, k)[i];
  const base = (h: string) => arg(arg(h)); // the [T, C] value under split heads
  for (const merged of topoOrder(g)) {
    if (op(merged) !== "reshape" || op(arg(merged)) !== "transpose") continue;
    const attn = arg(arg(merged));
    if (op(attn) !== "matmul") continue;
    const probs = arg(attn);
    if (op(probs) !== "softmax") continue;
    const causal = op(arg(probs)) === "causal_mask";
    const scaled = causal ? arg(arg(probs)) : arg(probs);
    const c = nodeData(g, arg(scaled, 1));
    if (op(scaled) !== "mul" || c.op !== "const") continue;
    const scores = arg(scaled);
    const heads = nodeData(g, scores).type.shape[0] as number;
    const key = insert(
      d,
      `${merged}_attention`,
      {
        op: "attention",
        attrs: { heads, scale: c.attrs.value, causal },
        type: nodeData(g, merged).type,
        origin: "test",
      },
      [base(arg(scores)), base(arg(scores, 1)), base(arg(attn, 1))],
    );
    replaceUses(d, merged, key);
  }
  removeDead(d);
  return verify(freeze(d));
}
