/** config.json → a model and its config. `"model_type": "gpt2"` is a Hugging Face GPT-2; an object
 *  with the constructor arguments of the PyTorch tutorial's Seq2SeqTransformer is that
 *  encoder–decoder. Every field is checked; an error names config.json, the field and the cause. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { assertNever, fail } from "../compiler/errors.ts";
import { buildGraph, type ModelDef } from "../compiler/dsl/model.ts";
import type { Graph } from "../compiler/ir/graph.ts";
import gpt2, { type GPT2Config } from "../models/gpt2.ts";
import seq2seq, { defaults as seq2seqDefaults, type Seq2SeqConfig } from "../models/seq2seq.ts";

export type CheckpointModel =
  | { readonly kind: "gpt2"; readonly def: ModelDef<GPT2Config>; readonly config: GPT2Config }
  | {
      readonly kind: "seq2seq";
      readonly def: ModelDef<Seq2SeqConfig>;
      readonly config: Seq2SeqConfig;
    };

type Json = Record<string, unknown>;

const SEQ2SEQ_KEYS = [
  "num_encoder_layers",
  "num_decoder_layers",
  "emb_size",
  "nhead",
  "src_vocab_size",
  "tgt_vocab_size",
  "dim_feedforward",
] as const;

function positiveInt(j: Json, key: string, file: string, fallback?: number): number {
  const v = Object.prototype.hasOwnProperty.call(j, key) ? j[key] : undefined;
  if (v === undefined && fallback !== undefined) return fallback;
  if (v === undefined) fail("checkpoint", file, `"${key}" is missing`);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0)
    fail("checkpoint", file, `"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function positiveNumber(j: Json, key: string, file: string, fallback: number): number {
  const v = Object.prototype.hasOwnProperty.call(j, key) ? j[key] : fallback;
  if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v))
    fail("checkpoint", file, `"${key}" must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

export function readConfigJson(dir: string): Json {
  const file = join(dir, "config.json");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(
      "checkpoint",
      file,
      code === "ENOENT"
        ? "missing: a checkpoint folder holds config.json and model.safetensors"
        : `cannot read (${code})`,
    );
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    fail("checkpoint", file, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof j !== "object" || j === null || Array.isArray(j))
    fail("checkpoint", file, "must hold a JSON object");
  return j as Json;
}

function gpt2Config(j: Json, file: string): GPT2Config {
  const act = j["activation_function"] ?? "gelu_new";
  if (act !== "gelu_new" && act !== "gelu_pytorch_tanh")
    fail(
      "checkpoint",
      file,
      `"activation_function" ${JSON.stringify(act)} is not supported (GPT-2 uses "gelu_new")`,
    );
  const c: GPT2Config = {
    vocab_size: positiveInt(j, "vocab_size", file),
    n_positions: positiveInt(j, "n_positions", file),
    n_embd: positiveInt(j, "n_embd", file),
    n_layer: positiveInt(j, "n_layer", file),
    n_head: positiveInt(j, "n_head", file),
    layer_norm_epsilon: positiveNumber(j, "layer_norm_epsilon", file, 1e-5),
  };
  const inner = j["n_inner"];
  if (inner !== undefined && inner !== null && inner !== 4 * c.n_embd)
    fail(
      "checkpoint",
      file,
      `"n_inner" ${JSON.stringify(inner)} is not supported (only null, meaning 4 × n_embd)`,
    );
  if (c.n_embd % c.n_head !== 0)
    fail("checkpoint", file, `"n_embd" (${c.n_embd}) must be divisible by "n_head" (${c.n_head})`);
  return c;
}

function seq2seqConfig(j: Json, file: string, maxLen: number): Seq2SeqConfig {
  const c: Seq2SeqConfig = {
    ...Object.fromEntries(SEQ2SEQ_KEYS.map((k) => [k, positiveInt(j, k, file)])),
    max_len: maxLen,
  } as Seq2SeqConfig;
  if (c.emb_size % c.nhead !== 0)
    fail(
      "checkpoint",
      file,
      `"emb_size" (${c.emb_size}) must be divisible by "nhead" (${c.nhead})`,
    );
  if (c.emb_size % 2 !== 0)
    fail("checkpoint", file, `"emb_size" (${c.emb_size}) must be even (sinusoidal positions)`);
  return c;
}

/** Detects the model from config.json. `maxLen` is the seq2seq positional table's length when the
 *  checkpoint carries one. */
export function modelFromConfig(dir: string, maxLen = seq2seqDefaults.max_len): CheckpointModel {
  const j = readConfigJson(dir);
  const file = join(dir, "config.json");
  if (j["model_type"] === "gpt2") return { kind: "gpt2", def: gpt2, config: gpt2Config(j, file) };
  if (j["model_type"] !== undefined)
    fail(
      "checkpoint",
      file,
      `"model_type" ${JSON.stringify(j["model_type"])} is not supported (kiln reads "gpt2" and the Seq2SeqTransformer layout)`,
    );
  if (SEQ2SEQ_KEYS.some((k) => k in j))
    return { kind: "seq2seq", def: seq2seq, config: seq2seqConfig(j, file, maxLen) };
  fail(
    "checkpoint",
    file,
    `not a GPT-2 config ("model_type": "gpt2") nor a Seq2SeqTransformer config (${SEQ2SEQ_KEYS.join(", ")})`,
  );
}

export function buildCheckpointGraph(m: CheckpointModel): Graph {
  switch (m.kind) {
    case "gpt2":
      return buildGraph(m.def, m.config);
    case "seq2seq":
      return buildGraph(m.def, m.config);
    default:
      return assertNever(m, "checkpoint model");
  }
}
