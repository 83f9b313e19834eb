/** `kiln generate --prompt`: text in through the checkpoint's GPT-2 tokenizer, text out. */
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { writeRandomCheckpoint } from "../../scripts/random-checkpoint.ts";
import { loadTokenizer } from "../../runtime/tokenizer.ts";
import { expectTypedError, kiln, tempDir } from "../helpers/cli.ts";

const TOKENIZER = join(import.meta.dirname, "..", "fixtures", "tokenizer");

it("encodes the prompt, generates, and decodes the new tokens", async () => {
  const dir = tempDir();
  const vocab = 657; // the tokenizer fixture's vocabulary
  writeRandomCheckpoint(dir, {
    kind: "gpt2",
    config: {
      vocab_size: vocab,
      n_positions: 24,
      n_embd: 12,
      n_layer: 1,
      n_head: 2,
      layer_norm_epsilon: 1e-5,
    },
  });
  for (const f of ["vocab.json", "merges.txt"]) copyFileSync(join(TOKENIZER, f), join(dir, f));
  const r = await kiln(
    "generate",
    dir,
    "--prompt",
    "Hello world",
    "--max-new-tokens",
    "4",
    "--json",
  );
  expect(r.stderr).toBe("");
  const out = JSON.parse(r.stdout) as { tokens: number[]; prompt: number[]; text: string };
  const tok = loadTokenizer(dir, true)!;
  expect(out.prompt).toEqual(tok.encode("Hello world"));
  expect(out.tokens).toHaveLength(4);
  expect(out.text).toBe(tok.decode(out.tokens));
  // The same ids given as --tokens continue identically.
  const same = await kiln(
    "generate",
    dir,
    "--tokens",
    out.prompt.join(","),
    "--max-new-tokens",
    "4",
    "--json",
  );
  expect((JSON.parse(same.stdout) as { tokens: number[] }).tokens).toEqual(out.tokens);
});

it("--prompt without tokenizer files is a clear error", async () => {
  const dir = tempDir();
  writeRandomCheckpoint(dir, {
    kind: "gpt2",
    config: {
      vocab_size: 20,
      n_positions: 8,
      n_embd: 4,
      n_layer: 1,
      n_head: 1,
      layer_norm_epsilon: 1e-5,
    },
  });
  expectTypedError(
    await kiln("generate", dir, "--prompt", "hi", "--max-new-tokens", "1"),
    "input",
    "needs a tokenizer",
  );
  expectTypedError(
    await kiln("generate", dir, "--prompt", "hi", "--tokens", "1", "--max-new-tokens", "1"),
    "usage",
    "exactly one",
  );
});
