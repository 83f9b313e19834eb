import { fail } from "../../compiler/errors.ts";
import { buildGraph, overrideConfig } from "../../compiler/dsl/model.ts";
import gpt2, { defaults as gpt2Defaults, type GPT2Config } from "../../models/gpt2.ts";
import { BACKENDS, DEFAULT_BACKENDS } from "../../bench/backends.ts";
import { formatReport } from "../../bench/report.ts";
import { runBench } from "../../bench/run.ts";
import { intFlag, parse } from "../args.ts";
import type { IO } from "../io.ts";

export const benchHelp = `kiln bench [options]

Measures kiln against a peer on a GPT-2-shaped model with random weights (d 768, 12 heads,
vocab 50257): prefill tokens/s at T=64 and T=256, decode ms/token after 255 positions with and
without a KV cache, matmul GFLOP/s at 64×768×768 and 128×768×3072, and each backend's peak RSS.
Each backend runs in a process of its own on the same checkpoint. The last column is kiln's
advantage: > 1 means kiln is better. Figures a backend cannot or should not run say why.
About two minutes with the defaults on two cores; see bench/README.md.

  --layers N            transformer blocks (default 2; 12 is GPT-2 small, several minutes)
  --config key=value    override another GPT-2 setting (repeatable): n_embd, n_head,
                        vocab_size, n_positions (at least 256), layer_norm_epsilon
  --backends a,b        one kiln backend and/or one peer (default ${DEFAULT_BACKENDS.join(",")}; known: ${Object.keys(BACKENDS).join(", ")})
  --quick               one run per figure instead of repetitions within ~3 s
  --seed S              seed of the weights and token ids (default 0)
  --json                print one JSON object instead of the table
`;

export function benchConfig(layers: string | undefined, pairs: readonly string[]): GPT2Config {
  const overrides = overrideConfig(gpt2Defaults, pairs, "kiln bench");
  const n = intFlag("--layers", layers);
  if (n !== undefined && overrides.n_layer !== undefined)
    fail("usage", "--layers", "give the layer count once: --layers or --config n_layer=");
  const config: GPT2Config = { ...gpt2Defaults, n_layer: n ?? 2, ...overrides };
  for (const [k, v] of Object.entries(config))
    if (k !== "layer_norm_epsilon" && !(Number.isInteger(v) && v > 0))
      fail(
        "usage",
        k === "n_layer" ? "--layers" : `--config ${k}`,
        `expected a positive integer, got ${v}`,
      );
  buildGraph(gpt2, config); // the model's own checks (n_embd divisible by n_head) as dsl errors
  return config;
}

/** Progress (one line per figure) goes to stderr when that is a terminal. */
export async function bench(argv: readonly string[], io: IO): Promise<string> {
  const { values, positionals } = parse("bench", argv, {
    layers: { type: "string" },
    config: { type: "string", multiple: true },
    backends: { type: "string" },
    quick: { type: "boolean" },
    seed: { type: "string" },
    json: { type: "boolean" },
  });
  if (positionals.length)
    fail(
      "usage",
      "kiln bench",
      `takes no positional arguments, got ${JSON.stringify(positionals[0])}`,
    );
  const seed = intFlag("--seed", values.seed, 0) ?? 0;
  const backends = values.backends?.split(",").map((s) => s.trim()) ?? DEFAULT_BACKENDS;
  const report = await runBench(
    {
      config: benchConfig(values.layers, values.config ?? []),
      seed,
      backends,
      quick: values.quick ?? false,
    },
    process.stderr.isTTY ? (line) => io.err(`  ${line}\n`) : undefined,
  );
  return values.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report);
}
