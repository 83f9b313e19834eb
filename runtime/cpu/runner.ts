/** `--target ts`: the graph is optimized (the default passes, or those given), lowered to a
 *  Program, emitted as one TypeScript module (compiler/codegen/ts), loaded (load.ts) and run on
 *  the checkpoint's float32 weights. The same Runner as the reference path: `forward` (every
 *  position's logits), and `prefill` → incremental decoding with the KV cache when the program
 *  has one, through a second module compiled from the decoding graph (runner.ts's
 *  decodingGraph: the last position's logits only). Each module is emitted and loaded on first
 *  use, so a process that only decodes (generate, the bench) never builds the forward's. Logits
 *  come back as float32 values in the Logits type's Float64Array. The runner keeps no reference
 *  to the Checkpoint: its weights are lent to the modules' load by weights.ts, which lets go of
 *  each one a module only packs, so a caller that drops the Checkpoint holds each weight once. */
import { emitModule } from "../../compiler/codegen/ts/module.ts";
import { KilnError } from "../../compiler/errors.ts";
import type { NDArray } from "../../compiler/ir/ndarray.ts";
import type { Graph } from "../../compiler/ir/graph.ts";
import { lower } from "../../compiler/lower/lower.ts";
import type { Program } from "../../compiler/lower/program.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import type { Checkpoint } from "../checkpoint.ts";
import {
  decodingGraph,
  packInputs,
  type Decoding,
  type Logits,
  type Runner,
  type RunnerOptions,
} from "../runner.ts";
import { loadModuleByKey, modulePath } from "./load.ts";
import { moduleKey } from "./module-key.ts";
import { cpuThreads } from "./threads.ts";
import { weightLender, type Lend } from "./weights.ts";
import type { CompiledModule, ModuleError, Output, Session, Tensor } from "./module.ts";

/** A generated module's error as a KilnError (the CLI prints it as such). */
function rethrow(m: CompiledModule, e: unknown): never {
  if (e instanceof m.RuntimeError) {
    const err = e as ModuleError;
    throw new KilnError(err.kind, err.where, err.detail);
  }
  throw e;
}

/** One Program emitted and loaded, with the weights its sessions share. */
interface Compiled {
  readonly mod: CompiledModule;
  guard<T>(f: () => T): T;
  newSession(): Session;
}

function compile(
  source: Graph,
  graph: Graph,
  program: Program,
  lend: Lend,
  threadCount: number | undefined,
): Compiled {
  const options = { graph, source };
  const mod = loadModuleByKey(moduleKey(program, options), () => emitModule(program, options));
  const path = modulePath(mod);
  const threads = path === undefined ? undefined : cpuThreads(path, threadCount);
  const guard = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      return rethrow(mod, e);
    }
  };
  // Sessions (the shared one, one per prefill) share the params and packed weights.
  let loaded: object | undefined;
  const newSession = (): Session =>
    guard(() =>
      mod.createSession(
        (loaded ??= lend((weights) => mod.load(weights, threads?.buffer))),
        threads,
      ),
    );
  return { mod, guard, newSession };
}

/** The inputs the given phases take, in the module's order. */
function tensors(
  c: Compiled,
  inputs: ReadonlyMap<string, NDArray>,
  phases: readonly string[],
): Tensor[] {
  return c.mod.model.inputs
    .filter((i) => phases.includes(i.phase))
    .map((i) => {
      const a = inputs.get(i.name)!;
      return { shape: a.shape, data: a.data };
    });
}

function logits([out]: readonly Output[]): Logits {
  const [rows, cols] = out.shape;
  return { rows, cols, data: Float64Array.from(out.data) };
}

export function tsRunner(ckpt: Checkpoint, options: RunnerOptions = {}): Runner {
  // No closure here may mention ckpt: the runner must not keep its weights alive (weights.ts).
  const { model, graph: source } = ckpt;
  const maxLength = source.bounds.get("T")?.max ?? Infinity;
  const lend = weightLender(ckpt);
  const graph = runPipeline(source, options.passes, options.afterPass).graph;
  const program = lower(graph);
  const lastGraph = decodingGraph(graph);
  const lastProgram = lower(lastGraph);
  let fullModule: Compiled | undefined;
  let lastModule: Compiled | undefined;
  const full = () => (fullModule ??= compile(source, graph, program, lend, options.threads));
  const last = () =>
    (lastModule ??= compile(source, lastGraph, lastProgram, lend, options.threads));
  let shared: Session | undefined;
  return {
    model,
    maxLength,
    async forward(tokens, srcTokens) {
      const inputs = packInputs(model, tokens, srcTokens);
      const c = full();
      const s = (shared ??= c.newSession());
      return logits(c.guard(() => s.run(tensors(c, inputs, ["source", "step"]))));
    },
    ...(lastProgram.kvCache.enabled
      ? {
          async prefill(
            tokens: readonly number[],
            srcTokens?: readonly number[],
          ): Promise<Decoding> {
            const inputs = packInputs(model, tokens, srcTokens);
            const c = last();
            const session = c.newSession();
            const first = logits(
              c.guard(() => session.run(tensors(c, inputs, ["source", "step"]))),
            );
            return {
              logits: first,
              step: async (next) => {
                const packed = packInputs(model, next, srcTokens);
                return logits(c.guard(() => session.step(tensors(c, packed, ["step"]))));
              },
            };
          },
        }
      : {}),
  };
}
