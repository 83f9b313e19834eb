/** What an artifact's loader is told about its model (runtime.ts's ArtifactSpec), derived from
 *  the graph, its Program and where the model came from:
 *  - inputs: name, the property that carries it (`src_tokens` → `srcTokens`), dtype, phase, the
 *    dim its length binds and that dim's bound, and for token ids the vocabulary — the rows of
 *    every table the input indexes with `gather` (the smallest, when there are several);
 *  - params with their shapes, and the checkpoint layout: for a checkpoint, runtime/checkpoint.ts's
 *    name mapping (prefixes, ignored buffers) as data, plus the config.json fields the model was
 *    built from; for a model file, the names exactly as the file declares them and no config;
 *  - whether `generate` applies: one per-position input of token ids, logits [T, vocab] out. */
import { fail } from "../../../errors.ts";
import { nodeData, users, type Graph } from "../../../ir/graph.ts";
import type { Program } from "../../../lower/program.ts";
import type { ArtifactSpec, ConfigCheck, InputSpec, LayoutSpec } from "./runtime.ts";

export type ConfigValue = number | string | boolean;

/** Where the model came from: a checkpoint of a known layout, or a DSL model file. */
export interface ArtifactModel {
  readonly kind: "gpt2" | "seq2seq" | "model";
  /** The model's name (the DSL definition's). */
  readonly name: string;
  readonly config: Readonly<Record<string, ConfigValue>>;
}

/** runtime/checkpoint.ts's LAYOUTS, as data the artifact can carry. GPT-2: `save_pretrained`
 *  prefixes `transformer.`; the causal-mask buffers and the tied LM head's copy are not read.
 *  Seq2seq: the positional table is a buffer (kiln computes the sinusoids). */
const CHECKPOINT_LAYOUTS: { readonly [K in "gpt2" | "seq2seq"]: LayoutSpec } = {
  gpt2: {
    stripPrefixes: ["transformer."],
    ignore: ["^h\\.\\d+\\.attn\\.(bias|masked_bias)$", "^lm_head\\.weight$"],
  },
  seq2seq: { stripPrefixes: [], ignore: ["^positional_encoding\\.pos_embedding$"] },
};

/** The config.json fields runtime/checkpoint-config.ts reads, with its defaults. */
function configChecks(m: ArtifactModel): ConfigCheck[] {
  const fields = (keys: readonly string[]) =>
    keys.map((key) => {
      const value = m.config[key];
      if (value === undefined) throw new Error(`artifact: the ${m.kind} config lacks ${key}`);
      return { key, value };
    });
  switch (m.kind) {
    case "gpt2":
      return [
        { key: "model_type", value: "gpt2" },
        ...fields(["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"]),
        { ...fields(["layer_norm_epsilon"])[0], missing: 1e-5 },
      ];
    case "seq2seq":
      return [
        { key: "model_type", value: null, missing: null },
        ...fields([
          "num_encoder_layers",
          "num_decoder_layers",
          "emb_size",
          "nhead",
          "src_vocab_size",
          "tgt_vocab_size",
          "dim_feedforward",
        ]),
      ];
    case "model":
      return [];
  }
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `src_tokens` → `srcTokens`; a name that would not be an identifier, or would clash, stays. */
function inputKeys(names: readonly string[]): string[] {
  const camel = names.map((n) => n.replace(/_+([a-z0-9])/g, (_, c: string) => c.toUpperCase()));
  return names.map((n, i) => {
    const c = camel[i];
    const unique = camel.filter((x) => x === c).length === 1 && (c === n || !names.includes(c));
    return IDENTIFIER.test(c) && unique ? c : n;
  });
}

/** Rows of the tables an i32 input indexes; null when it feeds no gather. */
function vocabulary(g: Graph, key: string): number | null {
  let vocab: number | null = null;
  for (const u of users(g, key)) {
    const n = nodeData(g, u);
    if (n.op !== "gather") continue;
    const edges = g.nodes.edges(key, u).map((e) => g.nodes.getEdgeAttribute(e, "slot"));
    if (!edges.includes(1)) continue;
    const table = g.nodes.source(g.nodes.filterInEdges(u, (_e, a) => a.slot === 0)[0]);
    const rows = nodeData(g, table).type.shape[0];
    if (typeof rows === "number") vocab = vocab === null ? rows : Math.min(vocab, rows);
  }
  return vocab;
}

function inputSpecs(
  graph: Graph,
  program: Program,
  maxDims: ReadonlyMap<string, number>,
): InputSpec[] {
  const keys = inputKeys(graph.inputs);
  return graph.inputs.map((name, i) => {
    const t = nodeData(graph, name).type;
    if (t.shape.length !== 1)
      fail(
        "not-built",
        `input "${name}"`,
        `the ts artifact takes sequences (rank-1 inputs); this one is ${t.dtype}[${t.shape.join(",")}]`,
      );
    const buf = program.buffers.find((b) => b.role === "input" && b.name === name);
    if (!buf) throw new Error(`artifact: the program has no buffer for input ${name}`);
    const length = t.shape[0];
    const bound = typeof length === "string" ? graph.bounds.get(length) : undefined;
    const cap = typeof length === "string" ? maxDims.get(length) : undefined;
    const capped = cap !== undefined && (bound === undefined || cap < bound.max);
    return {
      name,
      key: keys[i],
      dtype: t.dtype,
      phase: buf.phase,
      length,
      maxLength: capped ? cap : (bound?.max ?? null),
      why: capped ? "the length the artifact was compiled for (--seq-len)" : (bound?.why ?? null),
      vocab: t.dtype === "i32" ? vocabulary(graph, name) : null,
    };
  });
}

/** Why generate does not apply to this model; null when it does. */
function noGenerate(
  inputs: readonly InputSpec[],
  out: readonly (number | string)[],
): string | null {
  const step = inputs.filter((i) => i.phase === "step");
  if (step.length !== 1 || step[0].vocab === null)
    return `generate needs exactly one per-position input of token ids; this model takes ${inputs.map((i) => `${i.key} (${i.dtype})`).join(", ")}`;
  if (out.length !== 2 || out[0] !== step[0].length || typeof out[1] !== "number")
    return `generate needs logits [${step[0].length}, vocab] as the first output; it is [${out.join(",")}]`;
  return null;
}

export function artifactSpec(
  graph: Graph,
  program: Program,
  model: ArtifactModel,
  maxDims: ReadonlyMap<string, number> = new Map(),
): ArtifactSpec {
  const inputs = inputSpecs(graph, program, maxDims);
  const outName = graph.outputs[0];
  const outShape = nodeData(graph, outName).type.shape;
  // The graph's params, not the program's: the artifact accepts exactly the files kiln does.
  const params: { name: string; shape: number[] }[] = [];
  graph.nodes.forEachNode((_k, n) => {
    if (n.op === "param") params.push({ name: n.attrs.name, shape: n.type.shape as number[] });
  });
  return {
    kind: model.kind,
    name: model.name,
    inputs,
    output: { name: outName, shape: [...outShape] },
    params,
    layout:
      model.kind === "model" ? { stripPrefixes: [], ignore: [] } : CHECKPOINT_LAYOUTS[model.kind],
    config: configChecks(model),
    kvCache: program.kvCache.enabled,
    noGenerate: noGenerate(inputs, outShape),
  };
}
