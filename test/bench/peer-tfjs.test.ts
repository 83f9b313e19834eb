/** The tfjs peer computes the same GPT-2 as kiln: its logits (full forward, KV-cache decode,
 *  after a rewind) match the float64 reference interpreter's on a tiny config, to float32
 *  accuracy (1e-4 relative). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildGraph } from "../../compiler/dsl/model.ts";
import { interpret } from "../../compiler/ir/interpret.ts";
import { ndarray } from "../../compiler/ir/ndarray.ts";
import gpt2, { type GPT2Config } from "../../models/gpt2.ts";
import { randomTensors } from "../../scripts/random-checkpoint.ts";
import {
  disposeKV,
  initTfjs,
  TfjsCache,
  TfjsGpt2,
  tfjsMatmul,
  tfjsTensorCount,
  type PeerWeights,
} from "../../bench/peer-tfjs.ts";

const CONFIG: GPT2Config = {
  vocab_size: 37,
  n_positions: 16,
  n_embd: 16,
  n_layer: 2,
  n_head: 2,
  layer_norm_epsilon: 1e-5,
};
const TOKENS = [3, 36, 0, 7, 7, 21, 12, 5, 30, 1, 2];
const TOL = 1e-4;

let weights: PeerWeights;
let want: Float64Array[]; // the interpreter's logits, one row per position of TOKENS
let model: TfjsGpt2;

/** max over entries of |a − b| / max(1, |b|) */
function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < b.length; i++)
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return worst;
}

const row = (logits: Float32Array, r: number) =>
  logits.subarray(r * CONFIG.vocab_size, (r + 1) * CONFIG.vocab_size);

beforeAll(async () => {
  await initTfjs();
  const tensors = randomTensors({ kind: "gpt2", config: CONFIG }, 7);
  weights = new Map(tensors.map((t) => [t.name, { shape: t.shape, data: t.data as Float32Array }]));
  const [out] = interpret(buildGraph(gpt2, CONFIG), {
    inputs: new Map([["tokens", ndarray([TOKENS.length], TOKENS)]]),
    param: (name) => {
      const w = weights.get(name);
      return w && ndarray(w.shape, w.data);
    },
  });
  const v = CONFIG.vocab_size;
  want = TOKENS.map((_, r) => out.data.slice(r * v, (r + 1) * v));
  model = new TfjsGpt2(CONFIG, weights);
});

afterAll(() => model?.dispose());

describe("tfjs peer vs the reference interpreter", () => {
  it("full forward: every position's logits", () => {
    const out = model.forward(TOKENS, null, false);
    expect(out.rows).toBe(TOKENS.length);
    TOKENS.forEach((_, r) => expect(relError(row(out.logits, r), want[r])).toBeLessThan(TOL));
    disposeKV(out.present);
  });

  it("last-position logits only", () => {
    const out = model.forward(TOKENS, null, true);
    expect(out.rows).toBe(1);
    expect(relError(out.logits, want[TOKENS.length - 1])).toBeLessThan(TOL);
    disposeKV(out.present);
  });

  it("KV-cache decode: prefill then one token at a time, and again after a rewind", () => {
    const before = tfjsTensorCount();
    const cache = new TfjsCache(model);
    const p = 4;
    expect(relError(cache.prefill(TOKENS.slice(0, p)), want[p - 1])).toBeLessThan(TOL);
    for (let i = p; i < TOKENS.length; i++) {
      expect(relError(cache.step(TOKENS[i]), want[i])).toBeLessThan(TOL);
      expect(cache.length).toBe(i + 1);
    }
    cache.rewind(6);
    expect(cache.length).toBe(6);
    expect(relError(cache.step(TOKENS[6]), want[6])).toBeLessThan(TOL);
    cache.clear();
    expect(tfjsTensorCount()).toBe(before); // nothing leaked
  });

  it("a prompt at the context length is accepted; one past it is refused", () => {
    const cache = new TfjsCache(model);
    const full = Array.from({ length: CONFIG.n_positions }, (_, i) => i % CONFIG.vocab_size);
    expect(cache.prefill(full).length).toBe(CONFIG.vocab_size);
    expect(() => cache.step(1)).toThrow(/exceed n_positions/);
    cache.clear();
  });

  it("matmul figure: runs and frees its inputs", () => {
    const before = tfjsTensorCount();
    const mm = tfjsMatmul(3, 5, 4);
    mm.run();
    mm.dispose();
    expect(tfjsTensorCount()).toBe(before);
  });
});
