/** `--target wgsl` through makeRunner on the fixtures: every emitted shader compiles on the
 *  adapter with no messages, logits equal the reference runner's within the float32 bar, KV-cache
 *  decoding on the GPU equals full forwards, greedy generation equals the reference's, errors are
 *  KilnErrors — and the same model compiled for a profile whose binding size is smaller than its
 *  embedding (so the embedding, the logits and more are chunked) gives the same logits. */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { withLimits } from "../../../compiler/codegen/wgsl/limits.ts";
import { emitWgsl } from "../../../compiler/codegen/wgsl/program.ts";
import { KilnError } from "../../../compiler/errors.ts";
import { lower } from "../../../compiler/lower/lower.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { loadCheckpoint } from "../../../runtime/checkpoint.ts";
import { generate } from "../../../runtime/generate.ts";
import { makeRunner, type Logits, type Runner } from "../../../runtime/runner.ts";
import { loadModel } from "../../../runtime/webgpu/session.ts";
import { wgslRunner } from "../../../runtime/webgpu/runner.ts";
import { testGpu } from "../../helpers/gpu.ts";

const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");
const gpu = await testGpu();

function worst(a: Logits, b: Logits): number {
  expect([a.rows, a.cols]).toEqual([b.rows, b.cols]);
  let w = 0;
  for (let i = 0; i < b.data.length; i++)
    w = Math.max(w, Math.abs(a.data[i] - b.data[i]) / Math.max(1, Math.abs(b.data[i])));
  return w;
}

const argmaxes = (l: Logits): number[] =>
  Array.from({ length: l.rows }, (_, r) => {
    const row = l.data.subarray(r * l.cols, (r + 1) * l.cols);
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
    return best;
  });

describe.skipIf(!gpu).each([
  ["gpt2-tiny", undefined],
  ["gpt2-odd", undefined],
  ["seq2seq-tiny", [3, 4, 5, 6]],
  ["seq2seq-deep", [7, 1, 2]],
] as const)("%s on wgsl", (name, src) => {
  const ckpt = loadCheckpoint(join(FIXTURES, name));
  let wgsl!: Runner;
  let ref!: Runner;
  const tokens = [1, 5, 2, 7, 3];
  beforeAll(async () => {
    wgsl = await makeRunner(ckpt, "wgsl");
    ref = await makeRunner(ckpt, "ref");
  });

  it("compiles every shader with no messages, optimized and not", async () => {
    for (const passes of [undefined, []]) {
      const program = lower(runPipeline(ckpt.graph, passes).graph);
      const model = await loadModel(
        gpu!.device,
        emitWgsl(program, { limits: gpu!.limits }),
        (n) => ckpt.weights.get(n)?.data,
      );
      expect(model.messages).toEqual([]);
      model.destroy();
    }
  });

  it("gives the reference runner's logits within the float32 bar", async () => {
    for (const t of [tokens, tokens.slice(0, 1)]) {
      const a = await wgsl.forward(t, src);
      const b = await ref.forward(t, src);
      expect(worst(a, b)).toBeLessThanOrEqual(1e-4);
      expect(argmaxes(a)).toEqual(argmaxes(b));
    }
  });

  it("decodes with the KV cache on the GPU as full forwards do", async () => {
    expect(wgsl.prefill).toBeDefined();
    const d = await wgsl.prefill!(tokens.slice(0, 2), src);
    const two = await wgsl.forward(tokens.slice(0, 2), src);
    const lastOfTwo = { rows: 1, cols: two.cols, data: two.data.subarray(two.cols) };
    expect(worst(d.logits, lastOfTwo)).toBeLessThanOrEqual(1e-5);
    for (let t = 3; t <= tokens.length; t++) {
      const step = await d.step([tokens[t - 1]]);
      const full = await ref.forward(tokens.slice(0, t), src);
      const last = { rows: 1, cols: full.cols, data: full.data.subarray((t - 1) * full.cols) };
      expect(worst(step, last)).toBeLessThanOrEqual(1e-4);
    }
    const o = { maxNewTokens: Math.min(6, wgsl.maxLength - tokens.length), temperature: 0 };
    expect(await generate(wgsl, tokens, src, o)).toEqual(await generate(ref, tokens, src, o));
  });

  it("greedy decoding reads back only the chosen tokens: the argmax of the decoding's logits", async () => {
    expect(wgsl.greedy).toBeDefined();
    const g = await wgsl.greedy!(tokens.slice(0, 2), src);
    const d = await wgsl.prefill!(tokens.slice(0, 2), src);
    expect(g.token).toBe(argmaxes(d.logits)[0]);
    for (const t of tokens.slice(2)) expect(await g.step([t])).toBe(argmaxes(await d.step([t]))[0]);
  });

  it("reports inputs past the context as input errors", async () => {
    const long = Array<number>(wgsl.maxLength + 1).fill(1);
    const e = await wgsl.forward(long, src).then(
      () => expect.fail("no error"),
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(KilnError);
    expect((e as KilnError).kind).toBe("input");
  });
});

describe.skipIf(!gpu)("an embedding larger than the binding size", () => {
  it("runs split into chunks, with the same logits", async () => {
    const ckpt = loadCheckpoint(join(FIXTURES, "gpt2-tiny"));
    const wte = ckpt.weights.get("wte.weight")!;
    // A binding of a quarter of the embedding: the table, the logits and the big temps are chunked.
    const bytes = Math.floor((wte.data.length * 4) / 4 / 4) * 4;
    const small = await wgslRunner(ckpt, {
      limits: withLimits(gpu!.limits, { maxStorageBufferBindingSize: bytes }),
    });
    const ref = await makeRunner(ckpt, "ref");
    const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
    const a = await small.forward(tokens);
    expect(worst(a, await ref.forward(tokens))).toBeLessThanOrEqual(1e-4);
    const d = await small.prefill!(tokens.slice(0, 4));
    const step = await d.step([tokens[4]]);
    const full = await ref.forward(tokens.slice(0, 5));
    expect(
      worst(step, { rows: 1, cols: full.cols, data: full.data.subarray(4 * full.cols) }),
    ).toBeLessThanOrEqual(1e-4);
  });
});
