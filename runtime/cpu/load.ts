/** Loading a generated module without evaluating strings: the TypeScript is transpiled to
 *  JavaScript (CommonJS, so that loading stays synchronous), written to a cache folder under a
 *  name that is the SHA-256 of the source, and loaded with Node's module loader. A source seen
 *  before is loaded from the cache without transpiling. The runner also finds a module by a key
 *  of what its text is made from (module-key.ts), cached as `in-<key>.cjs`: a module made before
 *  is loaded without being emitted at all. The folder is `$KILN_CACHE_DIR` when set, else
 *  `kiln-ts` under the OS temp folder. */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tsMorph } from "../../compiler/codegen/ts/ts-morph.ts";
import type { CompiledModule } from "./module.ts";

const require = createRequire(import.meta.url);

export function cacheDir(): string {
  return process.env.KILN_CACHE_DIR ?? join(tmpdir(), "kiln-ts");
}

/** TypeScript → JavaScript (types erased); throws on a syntax error, naming it. */
export function transpile(source: string, module: "commonjs" | "esm" = "commonjs"): string {
  const { ts } = tsMorph();
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

/** The path `name`.cjs in the cache, written from `make()`'s TypeScript if it is not there yet. */
function cached(name: string, make: () => string, dir: string): string {
  const path = join(dir, `${name}.cjs`);
  if (!existsSync(path)) {
    const js = transpile(make());
    mkdirSync(dir, { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, js);
    renameSync(tmp, path); // atomic: a concurrent reader sees the whole file or none
  }
  return path;
}

/** The path the module's JavaScript is cached at, written if it is not there yet. */
export function cachedModulePath(source: string, dir = cacheDir()): string {
  const hash = createHash("sha256").update(source).digest("hex");
  return cached(hash, () => source, dir);
}

export function loadModule(source: string, dir?: string): CompiledModule {
  return requireModule(cachedModulePath(source, dir));
}

/** The module whose inputs hash to `key` (module-key.ts; undefined: no key), loaded from the cache
 *  without calling `emit` when a module was cached under the key before; else `emit()` gives
 *  its source, cached under the key. */
export function loadModuleByKey(
  key: string | undefined,
  emit: () => string,
  dir = cacheDir(),
): CompiledModule {
  if (key === undefined) return loadModule(emit(), dir);
  return requireModule(cached(`in-${key}`, emit, dir));
}

const paths = new WeakMap<CompiledModule, string>();

function requireModule(path: string): CompiledModule {
  const m = checked(require(path));
  paths.set(m, path);
  return m;
}

/** The file a module was loaded from (what a worker thread loads too). */
export function modulePath(m: CompiledModule): string | undefined {
  return paths.get(m);
}

function checked(m: unknown): CompiledModule {
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
