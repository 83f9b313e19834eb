/** kiln's reference path as a bench Backend: the checkpoint through runtime/runner.ts's `ref`
 *  target, kiln's float64 interpreter. It is the oracle, not built for speed: it computes logits
 *  for every position, offers no KV cache the bench can rewind, and the figures that would take
 *  it more than REF_MAX_GFLOP are skipped with that reason. */
import { ModelBuilder } from "../compiler/dsl/builder.ts";
import { matmul } from "../compiler/dsl/primitives.ts";
import { interpret } from "../compiler/ir/interpret.ts";
import { ndarray } from "../compiler/ir/ndarray.ts";
import { loadCheckpoint } from "../runtime/checkpoint.ts";
import { makeRunner, type Logits } from "../runtime/runner.ts";
import { seededRandom } from "../runtime/generate.ts";
import { forwardFlops } from "./figures.ts";
import type { Backend, BackendContext, MatmulRun } from "./harness.ts";

/** The most work a figure may give the reference path, in GFLOP. It runs at ~0.2–0.5 GFLOP/s on
 *  the 2-core machine of bench/README.md, so this admits the T=64 prefill (6.7 GFLOP with 2
 *  layers, 16 with 12) and refuses what would take minutes. */
export const REF_MAX_GFLOP = 20;

const lastRow = (l: Logits) => l.data.subarray((l.rows - 1) * l.cols, l.rows * l.cols);

/** (m×k)·(k×n) as a one-op graph, run by the interpreter. */
function refMatmul(m: number, k: number, n: number): MatmulRun {
  const b = new ModelBuilder("bench_matmul");
  const g = b.finish([matmul(b.input("a", "f32", [m, k]), b.param("b", [k, n]))]);
  const rand = seededRandom(1);
  const a = ndarray(
    [m, k],
    Array.from({ length: m * k }, () => rand() - 0.5),
  );
  const w = ndarray(
    [k, n],
    Array.from({ length: k * n }, () => rand() - 0.5),
  );
  const feeds = { inputs: new Map([["a", a]]), param: () => w };
  return { run: () => void interpret(g, feeds) };
}

export async function create(ctx: BackendContext): Promise<Backend> {
  const runner = await makeRunner(loadCheckpoint(ctx.checkpointDir), "ref");
  const c = ctx.config;
  return {
    name: "ref",
    side: "kiln",
    description: "kiln's reference path (runtime/runner.ts target ref, float64 interpreter)",
    notes: ["ref: computes logits for every position (the others: the last one only)"],
    prefill: async (tokens) => lastRow(await runner.forward(tokens)),
    forwardNoCache: async (tokens) => lastRow(await runner.forward(tokens)),
    matmul: refMatmul,
    skip(w) {
      if (w.kind === "matmul") return undefined;
      if (w.kind === "decode" && w.cache)
        return "the reference path has no KV cache the bench can rewind";
      const t = w.kind === "prefill" ? w.tokens : w.past + 1;
      const gflop = forwardFlops(c, t, 0, t) / 1e9;
      return gflop > REF_MAX_GFLOP
        ? `${gflop.toFixed(0)} GFLOP in float64, over the reference path's ${REF_MAX_GFLOP}`
        : undefined;
    },
  };
}
