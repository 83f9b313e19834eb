/** The generation loop: greedy at temperature 0, otherwise sampling from softmax(logits / t),
 *  optionally restricted to the top k, with a seeded generator so runs repeat. */
import { fail } from "../compiler/errors.ts";
import { packInputs, type Logits, type Runner } from "./runner.ts";

export interface GenerateOptions {
  readonly maxNewTokens: number;
  readonly temperature?: number;
  readonly topK?: number;
  readonly seed?: number;
}

/** mulberry32: a small, well-distributed 32-bit generator. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index of the largest value; the first one on ties, as torch.argmax. */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

export function lastRow(l: Logits): Float64Array {
  return l.data.subarray((l.rows - 1) * l.cols, l.rows * l.cols);
}

export function sample(
  row: ArrayLike<number>,
  temperature: number,
  topK: number | undefined,
  rand: () => number,
): number {
  if (temperature === 0) return argmax(row);
  const ids = Array.from({ length: row.length }, (_, i) => i).sort(
    (a, b) => row[b] - row[a] || a - b,
  );
  const keep = ids.slice(0, topK ?? ids.length);
  const m = row[keep[0]];
  const w = keep.map((i) => Math.exp((row[i] - m) / temperature));
  let r = rand() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < keep.length; j++) if ((r -= w[j]) < 0) return keep[j];
  return keep[keep.length - 1];
}

export function checkGenerateOptions(o: GenerateOptions): void {
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0)
    fail("usage", "--max-new-tokens", `must be a non-negative integer, got ${o.maxNewTokens}`);
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t))
    fail("usage", "--temperature", `must be a number ≥ 0, got ${t}`);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 1))
    fail("usage", "--top-k", `must be a positive integer, got ${o.topK}`);
}

/** Returns only the new token ids. With a KV cache (a runner that has `prefill`) the prompt runs
 *  once and each new token is one cached step, each computing the last position's logits only
 *  (runner.ts Decoding); otherwise every step recomputes the whole prefix, with every row's
 *  logits, and samples the last. */
export async function generate(
  r: Runner,
  prompt: readonly number[],
  src: readonly number[] | undefined,
  o: GenerateOptions,
): Promise<number[]> {
  checkGenerateOptions(o);
  packInputs(r.model, prompt, src); // token ids are checked before the first step
  if (prompt.length + o.maxNewTokens > r.maxLength)
    fail(
      "input",
      "--max-new-tokens",
      `${prompt.length} prompt tokens + ${o.maxNewTokens} new tokens exceed the model's context of ${r.maxLength}`,
    );
  const rand = seededRandom(o.seed ?? 0);
  const tokens = [...prompt];
  const out: number[] = [];
  if (o.maxNewTokens === 0) return out;
  if ((o.temperature ?? 0) === 0 && r.greedy) {
    // The device picks each token; only its id comes back.
    const g = await r.greedy(prompt, src);
    let next = g.token;
    for (let i = 0; i < o.maxNewTokens; i++) {
      out.push(next);
      if (i + 1 < o.maxNewTokens) next = await g.step([next]);
    }
    return out;
  }
  const decoding = await r.prefill?.(prompt, src);
  let logits = decoding ? decoding.logits : await r.forward(tokens, src);
  for (let i = 0; i < o.maxNewTokens; i++) {
    const next = sample(lastRow(logits), o.temperature ?? 0, o.topK, rand);
    tokens.push(next);
    out.push(next);
    if (i + 1 < o.maxNewTokens)
      logits = decoding ? await decoding.step([next]) : await r.forward(tokens, src);
  }
  return out;
}
