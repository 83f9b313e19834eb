/** ts-morph (and the TypeScript it carries), loaded on first use. Importing it takes ~0.7 s here,
 *  which every `kiln` command paid at start-up while only emitting and transpiling a module
 *  needs it: a `kiln forward` or `generate` that finds its module in the cache (runtime/cpu/
 *  load.ts), `--help` and every input error no longer wait for it. A plain `require` (ts-morph is
 *  CommonJS), so emitting stays synchronous. */
import { createRequire } from "node:module";

type TsMorph = typeof import("ts-morph");

let loaded: TsMorph | undefined;

export function tsMorph(): TsMorph {
  return (loaded ??= createRequire(import.meta.url)("ts-morph") as TsMorph);
}
