import { fail } from "../../compiler/errors.ts";
import type { IO } from "../io.ts";
import { loadCheckpoint } from "../../runtime/checkpoint.ts";
import { argmax } from "../../runtime/generate.ts";
import { TARGETS, makeRunner, type Target } from "../../runtime/runner.ts";
import { PASS_HELP, PASS_OPTIONS, passFlags } from "../pass-flags.ts";
import { onePositional, parse, tokenList } from "../args.ts";

export const forwardHelp = `kiln forward <checkpoint-dir> --tokens 1,2,3 [options]

Runs one forward pass and prints the logits: one row per target position, one column per
vocabulary entry.

  --tokens 1,2,3       token ids (the decoder's target prefix for an encoder–decoder)
  --src-tokens 4,5,6   source token ids (encoder–decoder models)
  --target T           ts (default): generated TypeScript kernels (float32); ref: the float64
                       reference interpreter; wgsl: generated WGSL on a WebGPU device (float32;
                       in Node through the webgpu package: README, "WebGPU without a GPU")
  --json               print {"logits": [[...], ...]}; otherwise a summary per position
  (env) KILN_THREADS=N threads for --target ts's big matmuls (default: every core; 1: one)
${PASS_HELP}  (IR printed after passes goes to stderr)
`;

export function targetFlag(s: string | undefined): Target {
  const t = s ?? "ts";
  if (!(TARGETS as readonly string[]).includes(t))
    fail("usage", "--target", `unknown target ${JSON.stringify(t)} (${TARGETS.join(", ")})`);
  return t as Target;
}

export async function forward(argv: readonly string[], io: IO): Promise<string> {
  const { values, positionals } = parse("forward", argv, {
    tokens: { type: "string" },
    "src-tokens": { type: "string" },
    target: { type: "string" },
    json: { type: "boolean" },
    ...PASS_OPTIONS,
  });
  const dir = onePositional("forward", positionals, "checkpoint folder");
  const tokens = tokenList("--tokens", values.tokens);
  if (!tokens) fail("usage", "kiln forward", "--tokens is required");
  const target = targetFlag(values.target);
  const runner = await makeRunner(loadCheckpoint(dir), target, passFlags(values, io.err));
  const l = await runner.forward(tokens, tokenList("--src-tokens", values["src-tokens"]));
  const rows = Array.from({ length: l.rows }, (_, r) =>
    l.data.subarray(r * l.cols, (r + 1) * l.cols),
  );
  if (values.json) return JSON.stringify({ logits: rows.map((r) => Array.from(r)) }) + "\n";
  const lines = [`logits: ${l.rows} × ${l.cols} (${target})`, "pos  token  argmax  logit"];
  rows.forEach((r, i) => {
    const a = argmax(r);
    lines.push(
      `${String(i).padStart(3)}  ${String(tokens[i]).padStart(5)}  ${String(a).padStart(6)}  ${r[a].toFixed(6)}`,
    );
  });
  return lines.join("\n") + "\n";
}
