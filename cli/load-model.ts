/** `<model>` on the command line: a model file written in the DSL (`models/gpt2.ts`,
 *  `my-model.ts`), a built-in model's name (`gpt2`, `seq2seq`), or a checkpoint folder. Only the
 *  graph is built here; no weights are read. */
import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { KilnError, fail } from "../compiler/errors.ts";
import { buildGraph, isModelDef, overrideConfig } from "../compiler/dsl/model.ts";
import type { Graph } from "../compiler/ir/graph.ts";
import { buildCheckpointGraph, modelFromConfig } from "../runtime/checkpoint-config.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const BUILT_IN: Readonly<Record<string, string>> = {
  gpt2: "models/gpt2.ts",
  seq2seq: "models/seq2seq.ts",
};

export async function loadModelGraph(spec: string, configPairs: readonly string[]): Promise<Graph> {
  const builtIn =
    Object.prototype.hasOwnProperty.call(BUILT_IN, spec) && !existsSync(spec)
      ? join(ROOT, BUILT_IN[spec])
      : undefined;
  const path = builtIn ?? resolve(spec);
  if (!existsSync(path))
    fail("usage", spec, "no such model file or checkpoint folder (built-in models: gpt2, seq2seq)");
  if (statSync(path).isDirectory()) {
    if (configPairs.length)
      fail(
        "usage",
        "--config",
        "applies to model files, not checkpoints (their config.json decides)",
      );
    return buildCheckpointGraph(modelFromConfig(path));
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (e) {
    if (e instanceof KilnError) throw e;
    return fail("dsl", spec, `cannot load the model file: ${(e as Error).message.split("\n")[0]}`);
  }
  if (!isModelDef(mod.default))
    fail(
      "dsl",
      spec,
      "the model file must `export default defineModel({ name, defaults, build })`",
    );
  const def = mod.default;
  return buildGraph(def, overrideConfig(def.defaults, configPairs, "--config"));
}
