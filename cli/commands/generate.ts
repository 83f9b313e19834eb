import { fail } from "../../compiler/errors.ts";
import type { IO } from "../io.ts";
import { loadCheckpoint, type Checkpoint } from "../../runtime/checkpoint.ts";
import { generate as run } from "../../runtime/generate.ts";
import { makeRunner } from "../../runtime/runner.ts";
import { loadTokenizer } from "../../runtime/tokenizer.ts";
import { PASS_HELP, PASS_OPTIONS, passFlags } from "../pass-flags.ts";
import { intFlag, numberFlag, onePositional, parse, tokenList } from "../args.ts";
import { targetFlag } from "./forward.ts";

export const generateHelp = `kiln generate <checkpoint-dir> (--tokens 1,2,3 | --prompt "text") [options]

Continues a sequence token by token and prints the new token ids.

  --tokens 1,2,3         the prompt (the decoder's target prefix for an encoder–decoder)
  --prompt "text"        the prompt as text (needs vocab.json + merges.txt in the checkpoint)
  --src-tokens 4,5,6     source token ids (encoder–decoder models)
  --max-new-tokens N     how many tokens to generate (required)
  --temperature T        0 (the default) is greedy; above 0 samples from softmax(logits / T)
  --top-k K              sample among the K most likely tokens only
  --seed S               seed of the sampler (default 0)
  --target T             ts (default): generated TypeScript kernels (float32); ref: the float64
                         reference interpreter; wgsl: generated WGSL on a WebGPU device (float32;
                         in Node through the webgpu package: README, "WebGPU without a GPU")
  --json                 print {"tokens": [...new ids...], "prompt": [...], "text"?: "..."}
  (env) KILN_THREADS=N   threads for --target ts's big matmuls (default: every core; 1: one)
${PASS_HELP}  (IR printed after passes goes to stderr)
`;

export async function generate(argv: readonly string[], io: IO): Promise<string> {
  const { values, positionals } = parse("generate", argv, {
    tokens: { type: "string" },
    prompt: { type: "string" },
    "src-tokens": { type: "string" },
    "max-new-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    seed: { type: "string" },
    target: { type: "string" },
    json: { type: "boolean" },
    ...PASS_OPTIONS,
  });
  const dir = onePositional("generate", positionals, "checkpoint folder");
  if ((values.tokens === undefined) === (values.prompt === undefined))
    fail("usage", "kiln generate", "give exactly one of --tokens and --prompt");
  const maxNewTokens = intFlag("--max-new-tokens", values["max-new-tokens"]);
  if (maxNewTokens === undefined) fail("usage", "kiln generate", "--max-new-tokens is required");
  const target = targetFlag(values.target);
  // Held only until the runner has it: the ts runner lets go of weights it has handed over.
  let ckpt: Checkpoint | undefined = loadCheckpoint(dir);
  const tokenizer =
    values.prompt !== undefined || ckpt.model.kind === "gpt2"
      ? loadTokenizer(dir, values.prompt !== undefined)
      : undefined;
  const prompt = tokenList("--tokens", values.tokens) ?? tokenizer!.encode(values.prompt!);
  const runner = await makeRunner(ckpt, target, passFlags(values, io.err));
  ckpt = undefined;
  const tokens = await run(runner, prompt, tokenList("--src-tokens", values["src-tokens"]), {
    maxNewTokens,
    temperature: numberFlag("--temperature", values.temperature, 0),
    topK: intFlag("--top-k", values["top-k"]),
    seed: intFlag("--seed", values.seed, 0),
  });
  const text = tokenizer?.decode(tokens);
  if (values.json)
    return JSON.stringify({ tokens, prompt, ...(text !== undefined ? { text } : {}) }) + "\n";
  return `${tokens.join(" ")}\n${text !== undefined ? `${JSON.stringify(text)}\n` : ""}`;
}
