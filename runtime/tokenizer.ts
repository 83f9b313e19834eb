/** GPT-2's byte-level BPE tokenizer, read from vocab.json + merges.txt in a checkpoint folder. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fail } from "../compiler/errors.ts";

export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** The checkpoint's tokenizer; when it has none, undefined, or an error if `required`. */
export function loadTokenizer(dir: string, required: boolean): Tokenizer | undefined {
  const files = ["vocab.json", "merges.txt"].map((f) => join(dir, f));
  if (files.every((f) => !existsSync(f))) {
    if (required) fail("input", dir, "--prompt needs a tokenizer: the checkpoint has no vocab.json + merges.txt; use --tokens");
    return undefined;
  }
  return fail("not-built", dir, "the GPT-2 tokenizer is not built yet; use --tokens");
}
