/** Runs a loaded checkpoint on one target. Token ids are checked against the vocabularies and
 *  lengths against the context before anything runs. `ref` is the float64 reference interpreter;
 *  the generated targets arrive with the backends. */
import { fail } from "../compiler/errors.ts";
import { interpret } from "../compiler/ir/interpret.ts";
import { ndarray, type NDArray } from "../compiler/ir/ndarray.ts";
import type { Checkpoint } from "./checkpoint.ts";
import type { CheckpointModel } from "./checkpoint-config.ts";

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
  forward(tokens: readonly number[], srcTokens?: readonly number[]): Logits;
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

function referenceRunner(ckpt: Checkpoint): Runner {
  const cache = new Map<string, NDArray>();
  const param = (name: string): NDArray | undefined => {
    let a = cache.get(name);
    const w = ckpt.weights.get(name);
    if (!a && w) cache.set(name, (a = ndarray(w.shape, w.data)));
    return a;
  };
  return {
    model: ckpt.model,
    maxLength: ckpt.graph.bounds.get("T")?.max ?? Infinity,
    forward(tokens, srcTokens) {
      const inputs = packInputs(ckpt.model, tokens, srcTokens);
      const [out] = interpret(ckpt.graph, { inputs, param });
      const [rows, cols] = out.shape;
      return { rows, cols, data: out.data };
    },
  };
}

export function makeRunner(ckpt: Checkpoint, target: Target): Runner {
  switch (target) {
    case "ref":
      return referenceRunner(ckpt);
    case "ts":
    case "wgsl":
      return fail(
        "not-built",
        `--target ${target}`,
        "this backend is not built yet; use --target ref",
      );
  }
}
