import { parse, onePositional } from "../args.ts";
import { loadModelGraph } from "../load-model.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { fail } from "../../compiler/errors.ts";

export const inspectHelp = `kiln inspect <model|checkpoint-dir> [options]

Prints the model's graph as text IR: one line per value, its type on the right.
<model> is a DSL model file (models/gpt2.ts, my-model.ts), a built-in name (gpt2, seq2seq),
or a checkpoint folder (config.json decides the model; weights are not read).

  --config key=value   override a default of a model file's config (repeatable)
  --locations          show the DSL source line that made each value
  --format text        the output format (text only, for now)
`;

export async function inspect(argv: readonly string[]): Promise<string> {
  const { values, positionals } = parse("inspect", argv, {
    config: { type: "string", multiple: true },
    locations: { type: "boolean" },
    format: { type: "string" },
  });
  if (values.format !== undefined && values.format !== "text")
    fail("usage", "--format", `unknown format ${JSON.stringify(values.format)} (text)`);
  const graph = await loadModelGraph(
    onePositional("inspect", positionals, "model"),
    values.config ?? [],
  );
  return printGraph(graph, { locations: values.locations ?? false });
}
