/** Writes a checkpoint folder with seeded random weights in a model's real layout: Hugging Face
 *  GPT-2 or the tutorial's Seq2SeqTransformer. Tests use it for small models; benchmarks for
 *  GPT-2-small-sized ones (124M parameters, ~500 MB — never committed).
 *
 *    npx tsx scripts/random-checkpoint.ts gpt2 OUT_DIR [key=value ...]
 *    npx tsx scripts/random-checkpoint.ts seq2seq OUT_DIR [key=value ...] */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildGraph, overrideConfig } from "../compiler/dsl/model.ts";
import { seededRandom } from "../runtime/generate.ts";
import { writeSafetensors, type WritableTensor } from "../runtime/safetensors-write.ts";
import gpt2, { defaults as gpt2Defaults, type GPT2Config } from "../models/gpt2.ts";
import seq2seq, { defaults as s2sDefaults, type Seq2SeqConfig } from "../models/seq2seq.ts";

export type RandomModel =
  { kind: "gpt2"; config: GPT2Config } | { kind: "seq2seq"; config: Seq2SeqConfig };

/** Normal(0, std) samples from a seeded generator (Box–Muller). */
function normals(n: number, std: number, rand: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand())) * std;
    const t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

function configJson(m: RandomModel): object {
  if (m.kind === "gpt2")
    return {
      model_type: "gpt2",
      architectures: ["GPT2LMHeadModel"],
      activation_function: "gelu_new",
      n_inner: null,
      ...m.config,
    };
  const { max_len: _unused, ...args } = m.config;
  return args;
}

/** The tensors of a random checkpoint: every param of the model's graph. */
export function randomTensors(m: RandomModel, seed = 0, std = 0.3): WritableTensor[] {
  const graph = m.kind === "gpt2" ? buildGraph(gpt2, m.config) : buildGraph(seq2seq, m.config);
  const rand = seededRandom(seed);
  const out: WritableTensor[] = [];
  graph.nodes.forEachNode((_k, n) => {
    if (n.op !== "param") return;
    const shape = n.type.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    const isNormWeight = /(ln_\d|ln_f|norm\d?)\.weight$/.test(n.attrs.name);
    const data = normals(size, std, rand);
    if (isNormWeight) data.forEach((v, i) => (data[i] = 1 + v));
    out.push({ name: n.attrs.name, dtype: "F32", shape, data });
  });
  return out;
}

export function writeRandomCheckpoint(
  dir: string,
  m: RandomModel,
  seed = 0,
  tensors = randomTensors(m, seed),
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(configJson(m), null, 2) + "\n");
  writeFileSync(join(dir, "model.safetensors"), writeSafetensors(tensors, { format: "pt" }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [kind, out, ...pairs] = process.argv.slice(2);
  if ((kind !== "gpt2" && kind !== "seq2seq") || !out) {
    process.stderr.write(
      "usage: npx tsx scripts/random-checkpoint.ts gpt2|seq2seq OUT_DIR [key=value ...]\n",
    );
    process.exit(2);
  }
  const m: RandomModel =
    kind === "gpt2"
      ? { kind, config: { ...gpt2Defaults, ...overrideConfig(gpt2Defaults, pairs, "config") } }
      : { kind, config: { ...s2sDefaults, ...overrideConfig(s2sDefaults, pairs, "config") } };
  writeRandomCheckpoint(out, m);
  process.stdout.write(`wrote ${out}/config.json and ${out}/model.safetensors\n`);
}
