/** `--target ts`: the graph is optimized (the default passes, or those given), lowered to a
 *  Program, emitted as one TypeScript module (compiler/codegen/ts), loaded (load.ts) and run on
 *  the checkpoint's float32 weights. The same Runner as the reference path: `forward`, and
 *  `prefill` → incremental decoding with the KV cache when the program has one. Logits come back
 *  as float32 values in the Logits type's Float64Array. */
import { emitModule } from "../../compiler/codegen/ts/module.ts";
import { KilnError } from "../../compiler/errors.ts";
import type { NDArray } from "../../compiler/ir/ndarray.ts";
import { lower } from "../../compiler/lower/lower.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import type { Checkpoint } from "../checkpoint.ts";
import {
  packInputs,
  type Decoding,
  type Logits,
  type Runner,
  type RunnerOptions,
} from "../runner.ts";
import { loadModule } from "./load.ts";
import type { CompiledModule, ModuleError, Output, Session, Tensor } from "./module.ts";

/** A generated module's error as a KilnError (the CLI prints it as such). */
function rethrow(m: CompiledModule, e: unknown): never {
  if (e instanceof m.RuntimeError) {
    const err = e as ModuleError;
    throw new KilnError(err.kind, err.where, err.detail);
  }
  throw e;
}

export function tsRunner(ckpt: Checkpoint, options: RunnerOptions = {}): Runner {
  const graph = runPipeline(ckpt.graph, options.passes, options.afterPass).graph;
  const program = lower(graph);
  const mod = loadModule(emitModule(program, { graph, source: ckpt.graph }));
  const weights = (name: string) => ckpt.weights.get(name)?.data;
  const guard = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      return rethrow(mod, e);
    }
  };
  const tensors = (inputs: ReadonlyMap<string, NDArray>, phases: readonly string[]): Tensor[] =>
    mod.model.inputs
      .filter((i) => phases.includes(i.phase))
      .map((i) => {
        const a = inputs.get(i.name)!;
        return { shape: a.shape, data: a.data };
      });
  const logits = ([out]: readonly Output[]): Logits => {
    const [rows, cols] = out.shape;
    return { rows, cols, data: Float64Array.from(out.data) };
  };
  // Sessions (the shared one, one per prefill) share the params and packed weights.
  let loaded: object | undefined;
  const newSession = (): Session => guard(() => mod.createSession((loaded ??= mod.load(weights))));
  let shared: Session | undefined;
  return {
    model: ckpt.model,
    maxLength: ckpt.graph.bounds.get("T")?.max ?? Infinity,
    async forward(tokens, srcTokens) {
      const inputs = packInputs(ckpt.model, tokens, srcTokens);
      shared ??= newSession();
      const s = shared;
      return logits(guard(() => s.run(tensors(inputs, ["source", "step"]))));
    },
    ...(mod.model.kvCache
      ? {
          async prefill(
            tokens: readonly number[],
            srcTokens?: readonly number[],
          ): Promise<Decoding> {
            const session = newSession();
            const inputs = packInputs(ckpt.model, tokens, srcTokens);
            const first = logits(guard(() => session.run(tensors(inputs, ["source", "step"]))));
            return {
              logits: first,
              step: async (next) => {
                const packed = packInputs(ckpt.model, next, srcTokens);
                return logits(guard(() => session.step(tensors(packed, ["step"]))));
              },
            };
          },
        }
      : {}),
  };
}
