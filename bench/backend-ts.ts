/** kiln's generated TypeScript kernels as a bench Backend: the checkpoint through
 *  runtime/runner.ts's `ts` target (the default passes, lowered, emitted by compiler/codegen/ts,
 *  run on float32 weights), with its KV cache.
 *
 *  Every figure runs the runner's decoding program (runtime/runner.ts decodingGraph): logits for
 *  the last position only, as tfjs computes them. The no-cache forward is a prefill into a fresh
 *  session (an empty cache: every position recomputed), not `runner.forward`, which computes
 *  every position's logits and would compile and pack a second module.
 *
 *  The runner's Decoding cannot rewind: a session's cache only grows. So `cache.rewind(n)` starts
 *  a fresh session and prefills it with the first n tokens of the last prompt; the harness calls
 *  rewind untimed before every timed step, so each decode sample is one `step` of one token on a
 *  freshly prefilled cache of exactly n positions (the same work a real rewind would leave).
 *
 *  The matmul figures time the generated matmul kernel itself (compiler/codegen/ts/matmul.ts,
 *  the default schedule, no epilogue, b packed once untimed), made callable by
 *  bench/kernel-instance.ts (in the benchmarks only; the runtime loads its modules through
 *  runtime/cpu/load.ts). */
import type { MatmulSpec } from "../compiler/codegen/ts/matmul.ts";
import { ACC } from "../compiler/ir/expr.ts";
import { loadCheckpoint } from "../runtime/checkpoint.ts";
import { makeRunner, type Decoding, type Logits } from "../runtime/runner.ts";
import { threadCount } from "../runtime/cpu/threads.ts";
import type { Backend, BackendContext, DecodeCache, MatmulRun } from "./harness.ts";
import { instantiateMatmul } from "./kernel-instance.ts";
import { randomMatrix } from "./yardstick.ts";

const lastRow = (l: Logits) => l.data.subarray((l.rows - 1) * l.cols, l.rows * l.cols);

/** (m×k)·(k×n) by the generated kernel: a fresh instance per shape, b packed before timing. */
export function tsMatmul(m: number, k: number, n: number): MatmulRun {
  const spec: MatmulSpec = {
    name: "bench_matmul",
    irLine: `%y = matmul_epilogue(%x, %w) : f32[${m},${n}]`,
    K: k,
    N: n,
    transposeB: false,
    expr: ACC,
    a: { name: "x", colStride: 1 },
    b: { name: "w" },
    extras: [],
    out: { name: "y" },
  };
  const { kernel: run, pack: packB } = instantiateMatmul(spec);
  const a = randomMatrix(m * k, 1);
  const w = packB(randomMatrix(k * n, 2), 0);
  const out = new Float32Array(m * n);
  return { run: () => run(a, 0, k, w, out, 0, m) };
}

export async function create(ctx: BackendContext): Promise<Backend> {
  const runner = await makeRunner(loadCheckpoint(ctx.checkpointDir), "ts");
  const prefillRunner = runner.prefill;
  if (!prefillRunner) throw new Error("the ts runner has no KV cache for this model");
  let prompt: readonly number[] = [];
  let decoding: Decoding | undefined;
  let length = 0;
  const prefill = async (tokens: readonly number[]): Promise<Float64Array> => {
    decoding = await prefillRunner(tokens);
    prompt = tokens;
    length = tokens.length;
    return lastRow(decoding.logits);
  };
  const cache: DecodeCache = {
    async step(token) {
      if (!decoding) throw new Error("ts: step before any prefill");
      const l = await decoding.step([token]);
      length++;
      return lastRow(l);
    },
    async rewind(n) {
      if (n > prompt.length)
        throw new Error(`ts: cannot rewind to ${n} past a ${prompt.length}-token prompt`);
      await prefill(prompt.slice(0, n));
    },
    get length() {
      return length;
    },
  };
  return {
    name: "ts",
    side: "kiln",
    description:
      "kiln's generated TypeScript kernels (runtime/runner.ts target ts, float32, default passes)",
    notes: [
      "ts: prefill, steps and the no-cache forward compute the last position's logits only, as tfjs (the decoding program: the last-position pass)",
      "ts: the no-cache forward is a prefill of all 256 tokens into a fresh session (its cache is filled and dropped)",
      "ts: the cache cannot rewind; each decode sample is one step on a fresh, untimed prefill of 255 tokens",
      `ts: big matmuls on ${threadCount()} thread(s) (worker_threads sharing their columns; KILN_THREADS); the matmul figures time one thread`,
    ],
    prefill,
    // A fresh session from an empty cache recomputes every position: the no-cache forward, with
    // the decoding program (last position's logits), as tfjs's forward(tokens, null, lastOnly).
    forwardNoCache: async (tokens) => lastRow((await prefillRunner(tokens)).logits),
    cache,
    matmul: tsMatmul,
  };
}
