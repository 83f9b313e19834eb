import { fail } from "../../compiler/errors.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import { onePositional, parse } from "../args.ts";
import { loadModelGraph } from "../load-model.ts";
import { PASS_HELP, PASS_OPTIONS, passFlags } from "../pass-flags.ts";

export const inspectHelp = `kiln inspect <model|checkpoint-dir> [options]

Prints what the compiler makes of a model: the optimized graph as text IR, one line per value
with its type on the right and the pass that made it in a comment.
<model> is a DSL model file (models/gpt2.ts, my-model.ts), a built-in name (gpt2, seq2seq),
or a checkpoint folder (config.json decides the model; weights are not read).

  --config key=value    override a default of a model file's config (repeatable)
  --locations           show the DSL source line that made each value
  --format text         the output format
${PASS_HELP}`;

export async function inspect(argv: readonly string[]): Promise<string> {
  const { values, positionals } = parse("inspect", argv, {
    config: { type: "string", multiple: true },
    locations: { type: "boolean" },
    format: { type: "string" },
    ...PASS_OPTIONS,
  });
  if (values.format !== undefined && values.format !== "text")
    fail("usage", "--format", `unknown format ${JSON.stringify(values.format)} (text)`);
  const graph = await loadModelGraph(
    onePositional("inspect", positionals, "model"),
    values.config ?? [],
  );
  let out = "";
  const flags = passFlags(values, (s) => (out += s));
  const result = runPipeline(graph, flags.passes, flags.afterPass);
  return out + printGraph(result.graph, { locations: values.locations ?? false });
}
