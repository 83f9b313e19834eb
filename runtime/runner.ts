/** Runs a loaded checkpoint on one target. Token ids are checked against the vocabularies and
 *  lengths against the context before anything runs. `ref` optimizes the graph (the default
 *  passes, or those given), lowers it to a Program and runs that with the float64 Program
 *  interpreter; `prefill` (when the program keeps a KV cache) runs a second Program, lowered
 *  from the same optimized graph after the last-position pass (decodingGraph), that computes
 *  only the last position's logits; `ts` runs the generated TypeScript
 *  (runtime/cpu); `wgsl` the generated WGSL on a WebGPU device (runtime/webgpu). */
import { fail } from "../compiler/errors.ts";
import { ndarray, type NDArray } from "../compiler/ir/ndarray.ts";
import { createSession, type Session } from "../compiler/lower/execute.ts";
import { lower } from "../compiler/lower/lower.ts";
import type { Graph } from "../compiler/ir/graph.ts";
import { verify } from "../compiler/ir/verify.ts";
import { lastPosition } from "../compiler/passes/last-position.ts";
import type { Pass } from "../compiler/passes/pass.ts";
import { runPipeline } from "../compiler/passes/pipeline.ts";
import type { Checkpoint } from "./checkpoint.ts";
import type { CheckpointModel } from "./checkpoint-config.ts";
import { tsRunner } from "./cpu/runner.ts";
import { wgslRunner } from "./webgpu/runner.ts";

export const TARGETS = ["ref", "ts", "wgsl"] as const;
export type Target = (typeof TARGETS)[number];

export interface Logits {
  readonly rows: number;
  readonly cols: number;
  /** rows × cols, row-major: one row per target position. */
  readonly data: Float64Array;
}

export interface Runner {
  readonly model: CheckpointModel;
  /** The longest target sequence the model accepts (its context). */
  readonly maxLength: number;
  /** Every position's logits. */
  forward(tokens: readonly number[], srcTokens?: readonly number[]): Promise<Logits>;
  /** Present when the target keeps a KV cache: runs the prompt once, then takes only new tokens;
   *  the last position's logits only (Decoding). */
  readonly prefill?: (
    tokens: readonly number[],
    srcTokens?: readonly number[],
  ) => Promise<Decoding>;
  /** Present when the target can pick greedy tokens where the logits are (a GPU): the same
   *  decoding, reading back only each step's argmax. */
  readonly greedy?: (
    tokens: readonly number[],
    srcTokens?: readonly number[],
  ) => Promise<GreedyDecoding>;
}

/** Greedy decoding on the device: the prompt's next token, then one call per new token. The
 *  tokens are the argmax of what `prefill`'s Decoding would give (ties to the lowest id). */
export interface GreedyDecoding {
  readonly token: number;
  step(tokens: readonly number[]): Promise<number>;
}

/** Incremental decoding: the prompt's logits, then one call per batch of new tokens. Each gives
 *  the logits of its last position only (rows = 1): all that sampling reads, and what the
 *  decoding program computes (decodingGraph). */
export interface Decoding {
  readonly logits: Logits;
  step(tokens: readonly number[]): Promise<Logits>;
}

export interface RunnerOptions {
  /** The passes to optimize with (default: the whole pipeline; [] for none). */
  readonly passes?: readonly Pass[];
  /** Called with the graph after each pass (`--print-after-all`). */
  readonly afterPass?: (name: string, g: Graph) => void;
  /** Threads for `--target ts`'s big matmuls, this one included (default: `KILN_THREADS`, else
   *  every core; 1: none). runtime/cpu/threads.ts. */
  readonly threads?: number;
}

function vocabularies(m: CheckpointModel): { tokens: number; src_tokens?: number } {
  switch (m.kind) {
    case "gpt2":
      return { tokens: m.config.vocab_size };
    case "seq2seq":
      return { tokens: m.config.tgt_vocab_size, src_tokens: m.config.src_vocab_size };
  }
}

function checkIds(ids: readonly number[], vocab: number, flag: string): NDArray {
  if (ids.length === 0) fail("input", flag, "needs at least one token id");
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocab)
      fail(
        "input",
        flag,
        `token id ${id} at position ${i} is outside the vocabulary [0, ${vocab})`,
      );
  });
  return ndarray([ids.length], ids);
}

/** Checks and packs the graph inputs for one forward pass. */
export function packInputs(
  m: CheckpointModel,
  tokens: readonly number[],
  srcTokens?: readonly number[],
): Map<string, NDArray> {
  const v = vocabularies(m);
  const inputs = new Map([["tokens", checkIds(tokens, v.tokens, "--tokens")]]);
  if (v.src_tokens !== undefined) {
    if (!srcTokens)
      fail(
        "input",
        "--src-tokens",
        `the ${m.kind} model is an encoder–decoder: give the source sequence`,
      );
    inputs.set("src_tokens", checkIds(srcTokens, v.src_tokens, "--src-tokens"));
  } else if (srcTokens) fail("input", "--src-tokens", `the ${m.kind} model has no encoder`);
  return inputs;
}

/** The graph a Decoding runs: the optimized graph with the last-position pass, so prefill and
 *  step compute the last position's logits only ([1, vocab]), and nothing after the last
 *  attention for the other positions. */
export function decodingGraph(g: Graph): Graph {
  const out = lastPosition.run(g).graph;
  verify(out, lastPosition.name);
  return out;
}

function referenceRunner(ckpt: Checkpoint, options: RunnerOptions): Runner {
  const graph = runPipeline(ckpt.graph, options.passes, options.afterPass).graph;
  const program = lower(graph);
  const decoder = lower(decodingGraph(graph));
  const weights = new Map<string, NDArray>();
  const param = (name: string): NDArray | undefined => {
    let a = weights.get(name);
    const w = ckpt.weights.get(name);
    if (!a && w) weights.set(name, (a = ndarray(w.shape, w.data)));
    return a;
  };
  const logits = ([out]: readonly NDArray[]): Logits => {
    const [rows, cols] = out.shape;
    return { rows, cols, data: out.data };
  };
  let shared: Session | undefined;
  return {
    model: ckpt.model,
    maxLength: ckpt.graph.bounds.get("T")?.max ?? Infinity,
    async forward(tokens, srcTokens) {
      const inputs = packInputs(ckpt.model, tokens, srcTokens);
      shared ??= createSession(program, param);
      return logits(shared.run(inputs));
    },
    ...(decoder.kvCache.enabled
      ? {
          async prefill(
            tokens: readonly number[],
            srcTokens?: readonly number[],
          ): Promise<Decoding> {
            const session = createSession(decoder, param);
            const first = logits(session.run(packInputs(ckpt.model, tokens, srcTokens)));
            return {
              logits: first,
              step: async (next) => {
                const packed = packInputs(ckpt.model, next, srcTokens);
                return logits(session.step(new Map([["tokens", packed.get("tokens")!]])));
              },
            };
          },
        }
      : {}),
  };
}

/** A runner for the target. Async: the WebGPU target gets a device and builds its pipelines. */
export async function makeRunner(
  ckpt: Checkpoint,
  target: Target,
  options: RunnerOptions = {},
): Promise<Runner> {
  switch (target) {
    case "ref":
      return referenceRunner(ckpt, options);
    case "ts":
      return tsRunner(ckpt, options);
    case "wgsl":
      return wgslRunner(ckpt, options);
  }
}
