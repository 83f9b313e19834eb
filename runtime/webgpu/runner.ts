/** `--target wgsl`: the graph is optimized (the default passes, or those given), lowered to a
 *  Program, emitted as WGSL kernels (compiler/codegen/wgsl) against the device's own limits, and
 *  run by the WebGPU runtime (session.ts) on the process's shared device (device.ts). The same
 *  Runner as the other targets: `forward`, and `prefill` → incremental decoding with the KV
 *  cache on the GPU, through the decoding program (runtime/runner.ts decodingGraph: the last
 *  position's logits only, so a step reads back one row), or `greedy`, which reads back only the
 *  chosen token (the runtime's argmax over that row). Each program is compiled and its
 *  weights uploaded on first use: generation never builds the all-positions one. Logits come
 *  back as float32 values. */
import { emitWgsl, type WgslProgram } from "../../compiler/codegen/wgsl/program.ts";
import type { Limits } from "../../compiler/codegen/wgsl/limits.ts";
import { KilnError } from "../../compiler/errors.ts";
import type { NDArray } from "../../compiler/ir/ndarray.ts";
import { lower } from "../../compiler/lower/lower.ts";
import type { Program } from "../../compiler/lower/program.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import type { Checkpoint } from "../checkpoint.ts";
import {
  decodingGraph,
  packInputs,
  type Logits,
  type Runner,
  type RunnerOptions,
} from "../runner.ts";
import { sharedGpu } from "./device.ts";
import {
  loadModel,
  WebGpuError,
  type Output,
  type Tensor,
  type WebGpuModel,
  type WebGpuSession,
} from "./session.ts";

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
  const limits = options.limits ?? gpu.limits;
  // Both programs are emitted now, so a kernel that does not fit the limits fails here.
  const build = (g: typeof graph) => {
    const program = lower(g);
    return { program, wgsl: emitWgsl(program, { limits, graph: g, source: ckpt.graph }) };
  };
  const full = build(graph);
  const decoding = full.program.kvCache.enabled ? build(decodingGraph(graph)) : undefined;
  const weights = (name: string) => ckpt.weights.get(name)?.data;
  const models = new Map<object, Promise<WebGpuModel>>();
  const modelOf = (b: { wgsl: WgslProgram }): Promise<WebGpuModel> => {
    let m = models.get(b);
    if (!m) models.set(b, (m = guard(() => loadModel(gpu.device, b.wgsl, weights))));
    return m;
  };
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
      shared ??= (await modelOf(full)).createSession();
      const s = shared;
      return logits(await guard(() => s.run(tensors(full.program, inputs, false))));
    },
    ...(decoding?.wgsl.kvCache.enabled
      ? {
          async prefill(tokens: readonly number[], srcTokens?: readonly number[]) {
            const inputs = packInputs(ckpt.model, tokens, srcTokens);
            const session = (await modelOf(decoding)).createSession();
            const run = () => session.run(tensors(decoding.program, inputs, false));
            const first = logits(await guard(run));
            return {
              logits: first,
              step: async (next: readonly number[]) => {
                const packed = packInputs(ckpt.model, next, srcTokens);
                return logits(
                  await guard(() => session.step(tensors(decoding.program, packed, true))),
                );
              },
            };
          },
          async greedy(tokens: readonly number[], srcTokens?: readonly number[]) {
            const inputs = packInputs(ckpt.model, tokens, srcTokens);
            const session = (await modelOf(decoding)).createSession();
            const pick = (out: readonly Output[]) => out[0].data[0];
            const run = () => session.run(tensors(decoding.program, inputs, false), "argmax");
            const token = pick(await guard(run));
            return {
              token,
              step: async (next: readonly number[]) => {
                const packed = packInputs(ckpt.model, next, srcTokens);
                const t = tensors(decoding.program, packed, true);
                return pick(await guard(() => session.step(t, "argmax")));
              },
            };
          },
        }
      : {}),
  };
}
