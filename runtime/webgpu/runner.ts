/** `--target wgsl`: the graph is optimized (the default passes, or those given), lowered to a
 *  Program, emitted as WGSL kernels (compiler/codegen/wgsl) against the device's own limits, and
 *  run by the WebGPU runtime (session.ts) on the process's shared device (device.ts). The same
 *  Runner as the other targets: `forward`, and `prefill` → incremental decoding with the KV
 *  cache on the GPU when the program has one. Logits come back as float32 values. */
import { emitWgsl } from "../../compiler/codegen/wgsl/program.ts";
import type { Limits } from "../../compiler/codegen/wgsl/limits.ts";
import { KilnError } from "../../compiler/errors.ts";
import type { NDArray } from "../../compiler/ir/ndarray.ts";
import { lower } from "../../compiler/lower/lower.ts";
import type { Program } from "../../compiler/lower/program.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import type { Checkpoint } from "../checkpoint.ts";
import { packInputs, type Logits, type Runner, type RunnerOptions } from "../runner.ts";
import { sharedGpu } from "./device.ts";
import { loadModel, WebGpuError, type Output, type Tensor, type WebGpuSession } from "./session.ts";

/** A runtime error as a KilnError (the CLI prints it as such). */
function rethrow(e: unknown): never {
  if (e instanceof WebGpuError) throw new KilnError(e.kind, e.where, e.detail);
  throw e;
}

async function guard<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    return rethrow(e);
  }
}

export interface WgslRunnerOptions extends RunnerOptions {
  /** Compile against this profile instead of the device's limits (tests: tiny profiles). */
  readonly limits?: Limits;
}

/** The graph inputs a phase takes, in the program's order. */
function tensors(p: Program, inputs: ReadonlyMap<string, NDArray>, stepOnly: boolean): Tensor[] {
  return p.inputs
    .filter((id) => !stepOnly || p.buffers[id].phase === "step")
    .map((id) => {
      const a = inputs.get(p.buffers[id].name ?? p.buffers[id].node)!;
      return { shape: a.shape, data: a.data };
    });
}

export async function wgslRunner(
  ckpt: Checkpoint,
  options: WgslRunnerOptions = {},
): Promise<Runner> {
  const gpu = await sharedGpu();
  const graph = runPipeline(ckpt.graph, options.passes, options.afterPass).graph;
  const program = lower(graph);
  const wgsl = emitWgsl(program, {
    limits: options.limits ?? gpu.limits,
    graph,
    source: ckpt.graph,
  });
  const model = await guard(() =>
    loadModel(gpu.device, wgsl, (name) => ckpt.weights.get(name)?.data),
  );
  const logits = ([out]: readonly Output[]): Logits => {
    const [rows, cols] = out.shape;
    return { rows, cols, data: Float64Array.from(out.data) };
  };
  let shared: WebGpuSession | undefined;
  return {
    model: ckpt.model,
    maxLength: ckpt.graph.bounds.get("T")?.max ?? Infinity,
    async forward(tokens, srcTokens) {
      const inputs = packInputs(ckpt.model, tokens, srcTokens);
      shared ??= model.createSession();
      const s = shared;
      return logits(await guard(() => s.run(tensors(program, inputs, false))));
    },
    ...(wgsl.kvCache.enabled
      ? {
          async prefill(tokens: readonly number[], srcTokens?: readonly number[]) {
            const session = model.createSession();
            const inputs = packInputs(ckpt.model, tokens, srcTokens);
            const first = logits(await guard(() => session.run(tensors(program, inputs, false))));
            return {
              logits: first,
              step: async (next: readonly number[]) => {
                const packed = packInputs(ckpt.model, next, srcTokens);
                return logits(await guard(() => session.step(tensors(program, packed, true))));
              },
            };
          },
        }
      : {}),
  };
}
