/** `--target ts` through makeRunner: the same logits as the reference runner on a fixture (within
 *  float32 rounding), KV-cache decoding (last position only) equal to the last row of a full
 *  forward, the same greedy tokens, and errors as KilnErrors. */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { KilnError } from "../../../compiler/errors.ts";
import { loadCheckpoint } from "../../../runtime/checkpoint.ts";
import { generate } from "../../../runtime/generate.ts";
import { makeRunner, type Logits, type Runner } from "../../../runtime/runner.ts";

const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");

function worst(a: Logits, b: Logits): number {
  let w = 0;
  for (let i = 0; i < b.data.length; i++)
    w = Math.max(w, Math.abs(a.data[i] - b.data[i]) / Math.max(1, Math.abs(b.data[i])));
  return w;
}

describe.each([
  ["gpt2-tiny", undefined],
  ["seq2seq-tiny", [3, 4, 5, 6]],
] as const)("%s", (name, src) => {
  const ckpt = loadCheckpoint(join(FIXTURES, name));
  let ts!: Runner;
  beforeAll(async () => {
    ts = await makeRunner(ckpt, "ts");
  });
  let ref!: Runner;
  beforeAll(async () => {
    ref = await makeRunner(ckpt, "ref");
  });
  const tokens = [1, 5, 2, 7, 3];

  it("gives the reference runner's logits within float32 rounding", async () => {
    const a = await ts.forward(tokens, src);
    const b = await ref.forward(tokens, src);
    expect([a.rows, a.cols]).toEqual([b.rows, b.cols]);
    expect(worst(a, b)).toBeLessThanOrEqual(1e-5);
  });

  /** Row r of a forward's logits, as a one-row Logits. */
  const row = (l: Logits, r: number): Logits => ({
    rows: 1,
    cols: l.cols,
    data: l.data.subarray(r * l.cols, (r + 1) * l.cols),
  });

  it("decodes with the KV cache: the last row of full forwards, exactly", async () => {
    const d = await ts.prefill!(tokens.slice(0, 2), src);
    let full = await ts.forward(tokens.slice(0, 2), src);
    expect([d.logits.rows, d.logits.cols]).toEqual([1, full.cols]);
    expect(worst(d.logits, row(full, 1))).toBe(0);
    for (let t = 3; t <= tokens.length; t++) {
      const step = await d.step([tokens[t - 1]]);
      full = await ts.forward(tokens.slice(0, t), src);
      expect([step.rows, step.cols]).toEqual([1, full.cols]);
      expect(worst(step, row(full, t - 1))).toBe(0);
    }
  });

  it("prefill and steps give the last row only, as the reference runner's", async () => {
    const a = await ts.prefill!(tokens, src);
    const b = await ref.prefill!(tokens, src);
    const full = await ref.forward(tokens, src);
    expect([a.logits.rows, b.logits.rows]).toEqual([1, 1]);
    expect(worst(b.logits, row(full, tokens.length - 1))).toBeLessThanOrEqual(1e-12);
    expect(worst(a.logits, b.logits)).toBeLessThanOrEqual(1e-5);
    const [sa, sb] = [await a.step([4, 6]), await b.step([4, 6])];
    const longer = await ref.forward([...tokens, 4, 6], src);
    expect([sa.rows, sb.rows]).toEqual([1, 1]);
    expect(worst(sb, row(longer, tokens.length + 1))).toBeLessThanOrEqual(1e-12);
    expect(worst(sa, sb)).toBeLessThanOrEqual(1e-5);
  });

  it("generates the reference runner's greedy tokens, and those of cache-less forwards", async () => {
    const want = await generate(ref, tokens, src, { maxNewTokens: 4 });
    expect(await generate(ts, tokens, src, { maxNewTokens: 4 })).toEqual(want);
    // Without prefill, generate falls back to a full forward per token (every row computed).
    const noCache: Runner = { model: ts.model, maxLength: ts.maxLength, forward: ts.forward };
    expect(await generate(noCache, tokens, src, { maxNewTokens: 4 })).toEqual(want);
  });

  it("reports inputs past the context as input errors", async () => {
    const long = Array<number>(ts.maxLength + 1).fill(1);
    try {
      await ts.forward(long, src);
      expect.fail("no error");
    } catch (e) {
      expect(e).toBeInstanceOf(KilnError);
      expect((e as KilnError).kind).toBe("input");
      expect((e as KilnError).where).toBe('input "tokens"');
    }
  });
});
