/** GPT-2 written in TensorFlow.js ops on its pure-JavaScript CPU backend
 *  (@tensorflow/tfjs-backend-cpu): the peer `kiln bench` measures kiln against. The same model as
 *  models/gpt2.ts (Hugging Face's GPT2LMHeadModel: pre-LN blocks, fused c_attn, gelu_new, tied LM
 *  head), in float32, from the same checkpoint tensors, with a KV cache kept as concatenated K/V.
 *  test/bench/peer-tfjs.test.ts checks it against kiln's reference interpreter. */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import type { GPT2Config } from "../models/gpt2.ts";

export type PeerWeights = ReadonlyMap<
  string,
  { readonly shape: readonly number[]; readonly data: Float32Array }
>;

/** Selects the CPU backend. Production mode only silences tfjs's console advice (it suggests
 *  tfjs-node, which cannot be installed here); it changes no computation. */
export async function initTfjs(): Promise<string> {
  tf.enableProdMode();
  if (!(await tf.setBackend("cpu"))) throw new Error("tfjs: the cpu backend did not initialize");
  await tf.ready();
  return tf.version_core;
}

export const tfjsVersion = (): string => tf.version_core;

interface Norm {
  readonly g: tf.Tensor1D;
  readonly b: tf.Tensor1D;
}
interface Linear {
  readonly w: tf.Tensor2D; // [in, out]: Hugging Face's Conv1D layout
  readonly b: tf.Tensor1D;
}
interface Block {
  readonly ln1: Norm;
  readonly attn: Linear; // c_attn: C → 3C
  readonly proj: Linear; // attn.c_proj: C → C
  readonly ln2: Norm;
  readonly fc: Linear; // mlp.c_fc: C → 4C
  readonly down: Linear; // mlp.c_proj: 4C → C
}

/** One layer's cached keys and values, (H, P, D) each. */
export type LayerKV = {
  readonly k: tf.Tensor3D;
  readonly v: tf.Tensor3D;
}; // a type, not an interface: tf.tidy's TensorContainer needs the implicit index signature

export interface PeerOutput {
  /** rows × vocab, row-major: every position's logits, or only the last one's. */
  readonly logits: Float32Array;
  readonly rows: number;
  /** Every layer's K/V over past + new positions; the caller owns (and disposes) them. */
  readonly present: LayerKV[];
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): GPT-2's gelu_new. */
function geluNew(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), GELU_C);
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/** (x − mean) / √(var + ε) · g + b over the last axis, with the population variance. */
function layerNorm(x: tf.Tensor2D, n: Norm, eps: number): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), n.g), n.b);
}

const linear = (x: tf.Tensor2D, l: Linear): tf.Tensor2D => tf.add(tf.matMul(x, l.w), l.b);

/** 0 where query i (at absolute position past + i) may see key j, −∞ where j is in its future. */
function causalMask(t: number, past: number): tf.Tensor2D {
  const tk = past + t;
  const m = new Float32Array(t * tk);
  for (let i = 0; i < t; i++) m.fill(-Infinity, i * tk + past + i + 1, (i + 1) * tk);
  return tf.tensor2d(m, [t, tk]);
}

export function disposeKV(kv: readonly LayerKV[]): void {
  for (const l of kv) tf.dispose([l.k, l.v]);
}

/** GPT-2 on tfjs tensors. Owns its weight tensors (a class because it holds resources). */
export class TfjsGpt2 {
  private readonly wte: tf.Tensor2D; // (vocab, C): the token table and the tied LM head
  private readonly wpe: tf.Tensor2D; // (n_positions, C)
  private readonly blocks: Block[];
  private readonly lnF: Norm;
  private readonly owned: tf.Tensor[] = [];

  constructor(
    readonly config: GPT2Config,
    weights: PeerWeights,
  ) {
    const t = (name: string) => {
      const w = weights.get(name);
      if (!w) throw new Error(`tfjs peer: weight "${name}" is missing`);
      const x = tf.tensor(w.data, [...w.shape], "float32");
      this.owned.push(x);
      return x;
    };
    const norm = (p: string): Norm => ({ g: t(`${p}.weight`), b: t(`${p}.bias`) }) as Norm;
    const lin = (p: string): Linear => ({ w: t(`${p}.weight`), b: t(`${p}.bias`) }) as Linear;
    this.wte = t("wte.weight") as tf.Tensor2D;
    this.wpe = t("wpe.weight") as tf.Tensor2D;
    this.blocks = Array.from({ length: config.n_layer }, (_, i) => ({
      ln1: norm(`h.${i}.ln_1`),
      attn: lin(`h.${i}.attn.c_attn`),
      proj: lin(`h.${i}.attn.c_proj`),
      ln2: norm(`h.${i}.ln_2`),
      fc: lin(`h.${i}.mlp.c_fc`),
      down: lin(`h.${i}.mlp.c_proj`),
    }));
    this.lnF = norm("ln_f");
  }

  /** Runs `tokens` after the cached positions `past` (null: from position 0). `lastOnly` computes
   *  the LM head for the last position only, as generation needs. */
  forward(
    tokens: readonly number[],
    past: readonly LayerKV[] | null,
    lastOnly: boolean,
  ): PeerOutput {
    const c = this.config;
    const [T, C, H] = [tokens.length, c.n_embd, c.n_head];
    const D = C / H;
    const P = past ? past[0].k.shape[1] : 0;
    if (P + T > c.n_positions)
      throw new Error(`tfjs peer: ${P + T} positions exceed n_positions ${c.n_positions}`);
    const heads = (x: tf.Tensor2D) => tf.transpose(tf.reshape(x, [T, H, D]), [1, 0, 2]); // (H, T, D)
    const out = tf.tidy(() => {
      const ids = tf.tensor1d([...tokens], "int32");
      let x: tf.Tensor2D = tf.add(tf.gather(this.wte, ids), tf.slice(this.wpe, [P, 0], [T, C])); // (T, C)
      const mask = causalMask(T, P); // (T, P+T)
      const present: LayerKV[] = [];
      this.blocks.forEach((b, i) => {
        const qkv = linear(layerNorm(x, b.ln1, c.layer_norm_epsilon), b.attn); // (T, 3C)
        const [q, k, v] = tf.split(qkv, 3, 1).map((s) => heads(s as tf.Tensor2D)); // (H, T, D)
        const kAll = (past ? tf.concat([past[i].k, k], 1) : k) as tf.Tensor3D; // (H, P+T, D)
        const vAll = (past ? tf.concat([past[i].v, v], 1) : v) as tf.Tensor3D; // (H, P+T, D)
        present.push({ k: kAll, v: vAll });
        const scores = tf.add(tf.mul(tf.matMul(q, kAll, false, true), 1 / Math.sqrt(D)), mask); // (H, T, P+T)
        const attn = tf.matMul(tf.softmax(scores), vAll); // (H, T, D)
        const merged = tf.reshape(tf.transpose(attn, [1, 0, 2]), [T, C]) as tf.Tensor2D; // (T, C)
        x = tf.add(x, linear(merged, b.proj));
        const h = geluNew(linear(layerNorm(x, b.ln2, c.layer_norm_epsilon), b.fc)); // (T, 4C)
        x = tf.add(x, linear(h as tf.Tensor2D, b.down)); // (T, C)
      });
      x = layerNorm(x, this.lnF, c.layer_norm_epsilon);
      if (lastOnly) x = tf.slice(x, [T - 1, 0], [1, C]); // (1, C)
      const logits = tf.matMul(x, this.wte, false, true); // (rows, vocab): tied to wte
      return { logits, present };
    });
    const logits = out.logits.dataSync() as Float32Array;
    const rows = out.logits.shape[0];
    out.logits.dispose();
    return { logits, rows, present: out.present };
  }

  dispose(): void {
    tf.dispose(this.owned);
    this.owned.length = 0;
  }
}

/** A KV cache over a TfjsGpt2: prefill fills it, step appends one position, rewind truncates. */
export class TfjsCache {
  private kv: LayerKV[] | null = null;

  constructor(private readonly model: TfjsGpt2) {}

  get length(): number {
    return this.kv ? this.kv[0].k.shape[1] : 0;
  }

  /** Replaces the cache by `tokens`' K/V; returns the last position's logits. */
  prefill(tokens: readonly number[]): Float32Array {
    this.clear();
    const out = this.model.forward(tokens, null, true);
    this.kv = out.present;
    return out.logits;
  }

  step(token: number): Float32Array {
    const out = this.model.forward([token], this.kv, true);
    this.clear();
    this.kv = out.present;
    return out.logits;
  }

  rewind(length: number): void {
    if (!this.kv || length >= this.length) return;
    if (length <= 0) return this.clear();
    const cut = (t: tf.Tensor3D) =>
      tf.slice(t, [0, 0, 0], [t.shape[0], length, t.shape[2]]) as tf.Tensor3D;
    const next = this.kv.map((l) => ({ k: cut(l.k), v: cut(l.v) }));
    this.clear();
    this.kv = next;
  }

  clear(): void {
    if (this.kv) disposeKV(this.kv);
    this.kv = null;
  }
}

/** The peer's matmul figure: (m×k)·(k×n) with tf.matMul on random float32 inputs. */
export function tfjsMatmul(m: number, k: number, n: number): { run(): void; dispose(): void } {
  const a = tf.randomNormal([m, k], 0, 1, "float32", 1);
  const b = tf.randomNormal([k, n], 0, 1, "float32", 2);
  return {
    run() {
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
    },
    dispose: () => tf.dispose([a, b]),
  };
}

/** How many tensors tfjs holds: tests check that nothing leaks. */
export const tfjsTensorCount = (): number => tf.memory().numTensors;
