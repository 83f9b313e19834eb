/** A checkpoint folder: config.json + model.safetensors. Loading detects the model, builds its
 *  graph, and matches every tensor in the file to a param of the graph by name: a missing,
 *  unexpected or mis-shaped tensor is an error naming the tensor and both shapes. Known
 *  non-parameter buffers are accepted and ignored.
 *
 *  The file is stamped when it is read (size, modification time, inode): `weightRereader` reads
 *  single params again later — for a consumer that let go of the arrays to save memory (the ts
 *  runner) — and refuses if the stamp changed, so a rewritten file never mixes into a model. */
import { statSync } from "node:fs";
import { join } from "node:path";
import { fail } from "../compiler/errors.ts";
import type { Graph } from "../compiler/ir/graph.ts";
import { formatShape } from "../compiler/ir/shape.ts";
import {
  buildCheckpointGraph,
  modelFromConfig,
  type CheckpointModel,
} from "./checkpoint-config.ts";
import { readSafetensorsFile, type LoadedTensor } from "./safetensors.ts";

export interface Weight {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface Checkpoint {
  readonly dir: string;
  readonly model: CheckpointModel;
  readonly graph: Graph;
  /** By param name, as the graph's `param` nodes name them. */
  readonly weights: ReadonlyMap<string, Weight>;
  /** model.safetensors as it was when read (weightRereader compares it). */
  readonly stamp?: FileStamp;
}

export interface FileStamp {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

/** How a model's checkpoint names relate to its params. */
interface Layout {
  /** The param a tensor name stands for; `null` for a known buffer that is not a parameter. */
  readonly paramOf: (name: string) => string | null;
}

const GPT2_BUFFER = /^h\.\d+\.attn\.(bias|masked_bias)$/;

const LAYOUTS: { readonly [K in CheckpointModel["kind"]]: Layout } = {
  // save_pretrained of GPT2LMHeadModel prefixes "transformer."; the hub's files do not. The LM
  // head is tied to wte, so a stored lm_head.weight is a copy and is not read.
  gpt2: {
    paramOf: (name) => {
      const n = name.startsWith("transformer.") ? name.slice("transformer.".length) : name;
      return GPT2_BUFFER.test(n) || n === "lm_head.weight" ? null : n;
    },
  },
  // The tutorial's PositionalEncoding registers its sinusoid table as a buffer; kiln computes it.
  seq2seq: { paramOf: (name) => (name === "positional_encoding.pos_embedding" ? null : name) },
};

function paramShapes(g: Graph): Map<string, readonly number[]> {
  const out = new Map<string, readonly number[]>();
  g.nodes.forEachNode((_k, n) => {
    if (n.op === "param") out.set(n.attrs.name, n.type.shape as readonly number[]);
  });
  return out;
}

function seq2seqMaxLen(t: LoadedTensor | undefined, file: string): number | undefined {
  if (!t) return undefined;
  if (t.shape.length !== 3 || t.shape[1] !== 1)
    fail(
      "checkpoint",
      file,
      `tensor "${t.name}": shape [${t.shape}] is not the tutorial's [max_len, 1, emb_size]`,
    );
  return t.shape[0];
}

/** undefined when the file cannot be looked at (gone, say). */
function stampOf(file: string): FileStamp | undefined {
  try {
    const { size, mtimeMs, ino } = statSync(file);
    return { size, mtimeMs, ino };
  } catch {
    return undefined;
  }
}

/** Matches the file's tensors to the graph's params: each tensor a param of the right shape, at
 *  most once. Missing params are the caller's to check. */
function matchTensors(
  tensors: ReadonlyMap<string, LoadedTensor>,
  want: ReadonlyMap<string, readonly number[]>,
  layout: Layout,
  kind: string,
  file: string,
): Map<string, Weight> {
  const weights = new Map<string, Weight>();
  for (const [name, t] of tensors) {
    const param = layout.paramOf(name);
    if (param === null) continue;
    const shape = want.get(param);
    if (!shape)
      fail("checkpoint", file, `tensor "${name}": unexpected (not a parameter of ${kind})`);
    if (weights.has(param))
      fail("checkpoint", file, `tensor "${name}": stored twice (with and without a prefix)`);
    if (formatShape(t.shape) !== formatShape(shape))
      fail(
        "checkpoint",
        file,
        `tensor "${name}": shape ${formatShape(t.shape)} in the file, the model needs ${formatShape(shape)}`,
      );
    weights.set(param, { shape: t.shape, data: t.data });
  }
  return weights;
}

export function loadCheckpoint(dir: string): Checkpoint {
  modelFromConfig(dir); // config.json is checked before the (large) weights file is read
  const file = join(dir, "model.safetensors");
  const st = readSafetensorsFile(file);
  const stamp = stampOf(file);
  const model = modelFromConfig(
    dir,
    seq2seqMaxLen(st.tensors.get("positional_encoding.pos_embedding"), file),
  );
  const graph = buildCheckpointGraph(model);
  const want = paramShapes(graph);
  const layout = LAYOUTS[model.kind];
  const weights = matchTensors(st.tensors, want, layout, model.kind, file);
  for (const [param, shape] of want)
    if (!weights.has(param))
      fail(
        "checkpoint",
        file,
        `tensor "${param}": missing (the model needs f32${formatShape(shape)})`,
      );
  return { dir, model, graph, weights, ...(stamp ? { stamp } : {}) };
}

/** A function that reads one param of `ckpt` again from its file, refusing (a KilnError) when the
 *  file is no longer the one loadCheckpoint read; undefined for a checkpoint without a stamp. It
 *  holds no reference to `ckpt` or its weights: only the folder, the stamp and the params'
 *  shapes. */
export function weightRereader(ckpt: Checkpoint): ((param: string) => Weight) | undefined {
  const file = join(ckpt.dir, "model.safetensors");
  const { stamp, model } = ckpt;
  if (stamp === undefined) return undefined;
  const want = paramShapes(ckpt.graph);
  const layout = LAYOUTS[model.kind];
  return (param) => {
    const now = stampOf(file);
    if (
      now === undefined ||
      now.size !== stamp.size ||
      now.mtimeMs !== stamp.mtimeMs ||
      now.ino !== stamp.ino
    )
      fail(
        "checkpoint",
        file,
        `changed or gone since it was loaded (read again for tensor "${param}"); load the checkpoint again`,
      );
    const st = readSafetensorsFile(file, (name) => layout.paramOf(name) === param);
    const w = matchTensors(st.tensors, want, layout, model.kind, file).get(param);
    return w ?? fail("checkpoint", file, `tensor "${param}": missing`);
  };
}
