/** Loading a generated module without evaluating strings: the TypeScript is transpiled to
 *  JavaScript (CommonJS, so that loading stays synchronous), written to a cache folder under a
 *  name that is the SHA-256 of the source, and loaded with Node's module loader. A source seen
 *  before is loaded from the cache without transpiling. The folder is `$KILN_CACHE_DIR` when set,
 *  else `kiln-ts` under the OS temp folder. */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ts } from "ts-morph";
import type { CompiledModule } from "./module.ts";

const require = createRequire(import.meta.url);

export function cacheDir(): string {
  return process.env.KILN_CACHE_DIR ?? join(tmpdir(), "kiln-ts");
}

/** TypeScript → JavaScript (types erased); throws on a syntax error, naming it. */
export function transpile(source: string, module: "commonjs" | "esm" = "commonjs"): string {
  const r = ts.transpileModule(source, {
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: module === "esm" ? ts.ModuleKind.ESNext : ts.ModuleKind.CommonJS,
    },
    reportDiagnostics: true,
  });
  const errors = (r.diagnostics ?? []).map((d) =>
    ts.flattenDiagnosticMessageText(d.messageText, "\n"),
  );
  if (errors.length) throw new Error(`generated module does not parse: ${errors.join("; ")}`);
  return r.outputText;
}

/** The path the module's JavaScript is cached at, written if it is not there yet. */
export function cachedModulePath(source: string, dir = cacheDir()): string {
  const hash = createHash("sha256").update(source).digest("hex");
  const path = join(dir, `${hash}.cjs`);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, transpile(source));
    renameSync(tmp, path); // atomic: a concurrent reader sees the whole file or none
  }
  return path;
}

export function loadModule(source: string, dir?: string): CompiledModule {
  const m: unknown = require(cachedModulePath(source, dir));
  if (
    typeof m !== "object" ||
    m === null ||
    !("createSession" in m) ||
    typeof m.createSession !== "function" ||
    !("model" in m)
  )
    throw new Error("the generated module does not export createSession and model");
  return m as CompiledModule;
}
