/** The reference runner goes graph → passes → lower → Program interpreter. On every PyTorch
 *  fixture it reproduces torch's logits and greedy tokens with the default pipeline (and its KV
 *  cache) and with no passes at all (cache-less), and the two agree to float64 rounding. */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../../runtime/checkpoint.ts";
import { generate } from "../../../runtime/generate.ts";
import { makeRunner, type Logits, type Runner } from "../../../runtime/runner.ts";

const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");

interface Expected {
  model_type: "gpt2" | "seq2seq";
  forward: { tokens: number[]; src_tokens?: number[]; logits: number[][] }[];
  generate: {
    tokens: number[];
    src_tokens?: number[];
    max_new_tokens: number;
    new_tokens: number[];
  }[];
}

const fixtures = readdirSync(FIXTURES).filter(
  (d) => statSync(join(FIXTURES, d)).isDirectory() && d !== "tokenizer",
);

function relError(got: Logits, want: readonly number[][]): number {
  let worst = 0;
  want.forEach((row, i) =>
    row.forEach((w, j) => {
      const d = Math.abs(got.data[i * got.cols + j] - w) / Math.max(1, Math.abs(w));
      worst = Math.max(worst, d);
    }),
  );
  return worst;
}

describe.each(fixtures)("%s", (name) => {
  const dir = join(FIXTURES, name);
  const expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8")) as Expected;
  const ckpt = loadCheckpoint(dir);
  let optimized!: Runner;
  beforeAll(async () => {
    optimized = await makeRunner(ckpt, "ref");
  });
  let plain!: Runner;
  beforeAll(async () => {
    plain = await makeRunner(ckpt, "ref", { passes: [] });
  });
  // Only seq2seq differs from torch at ~1e-6: torch's positional table is float32.
  const tol = expected.model_type === "gpt2" ? 1e-9 : 1e-5;

  it("keeps a KV cache after the default pipeline, none without passes", async () => {
    expect(optimized.prefill).toBeDefined();
    expect(plain.prefill).toBeUndefined();
  });

  it.each(expected.forward.map((c, i) => [i, c] as const))("forward case %i", async (_i, c) => {
    const a = await optimized.forward(c.tokens, c.src_tokens);
    const b = await plain.forward(c.tokens, c.src_tokens);
    expect([a.rows, a.cols]).toEqual([c.logits.length, c.logits[0].length]);
    expect(relError(a, c.logits)).toBeLessThanOrEqual(tol);
    expect(relError(b, c.logits)).toBeLessThanOrEqual(tol);
    const bRows = Array.from({ length: b.rows }, (_, r) =>
      Array.from(b.data.subarray(r * b.cols, (r + 1) * b.cols)),
    );
    expect(relError(a, bRows)).toBeLessThanOrEqual(1e-12);
  });

  it.each(expected.generate.map((c, i) => [i, c] as const))("greedy case %i", async (_i, c) => {
    const o = { maxNewTokens: c.max_new_tokens, temperature: 0 };
    expect(await generate(optimized, c.tokens, c.src_tokens, o)).toEqual(c.new_tokens);
    expect(await generate(plain, c.tokens, c.src_tokens, o)).toEqual(c.new_tokens);
  });

  it("a cached decoding gives the last rows of a full forward over the same tokens", async () => {
    const c = expected.generate[0];
    const d = await optimized.prefill!(c.tokens, c.src_tokens);
    const tokens = [...c.tokens, ...c.new_tokens];
    const full = await optimized.forward(tokens, c.src_tokens);
    const row = (r: number) => Array.from(full.data.subarray(r * full.cols, (r + 1) * full.cols));
    const calls = [d.logits];
    for (const t of c.new_tokens) calls.push(await d.step([t]));
    calls.forEach((l, i) => {
      expect([l.rows, l.cols]).toEqual([1, full.cols]);
      expect(relError(l, [row(c.tokens.length - 1 + i)])).toBeLessThanOrEqual(1e-12);
    });
  });
});
