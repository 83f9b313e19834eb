/** The peer as a bench Backend: GPT-2 in TensorFlow.js on @tensorflow/tfjs-backend-cpu (pure
 *  JavaScript, float32), loaded from the run's checkpoint by kiln's own checkpoint reader. */
import { loadCheckpoint } from "../runtime/checkpoint.ts";
import type { Backend, BackendContext } from "./harness.ts";
import { disposeKV, initTfjs, TfjsCache, TfjsGpt2, tfjsMatmul } from "./peer-tfjs.ts";

export async function create(ctx: BackendContext): Promise<Backend> {
  const version = await initTfjs();
  const model = new TfjsGpt2(ctx.config, loadCheckpoint(ctx.checkpointDir).weights);
  const cache = new TfjsCache(model);
  return {
    name: "tfjs",
    side: "peer",
    description: `@tensorflow/tfjs-backend-cpu ${version} (pure JS, float32)`,
    notes: ["tfjs: KV cache by concatenating K/V each step; LM head on the last position only"],
    prefill: (tokens) => cache.prefill(tokens),
    forwardNoCache(tokens) {
      const out = model.forward(tokens, null, true);
      disposeKV(out.present);
      return out.logits;
    },
    cache,
    matmul: tfjsMatmul,
    dispose() {
      cache.clear();
      model.dispose();
    },
  };
}
