/** `--target ts` through makeRunner: the same logits as the reference runner on a fixture (within
 *  float32 rounding), KV-cache decoding equal to a full forward, and errors as KilnErrors. */
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

  it("decodes with the KV cache exactly as full forwards do", async () => {
    const d = await ts.prefill!(tokens.slice(0, 2), src);
    let full = await ts.forward(tokens.slice(0, 2), src);
    expect(worst(d.logits, full)).toBe(0);
    for (let t = 3; t <= tokens.length; t++) {
      const step = await d.step([tokens[t - 1]]);
      full = await ts.forward(tokens.slice(0, t), src);
      const last = { rows: 1, cols: full.cols, data: full.data.subarray((t - 1) * full.cols) };
      expect(worst(step, last)).toBe(0);
    }
    expect(await generate(ts, tokens, src, { maxNewTokens: 4 })).toEqual(
      await generate(ref, tokens, src, { maxNewTokens: 4 }),
    );
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
