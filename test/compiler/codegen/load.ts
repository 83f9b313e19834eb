/** Generated TypeScript as callable functions, for tests only: the source is transpiled with
 *  TypeScript (syntax errors fail the test) and instantiated with `new Function`. The runtime
 *  never evaluates generated strings; tests do, to check what the generator wrote. */
import ts from "typescript";

/** Type annotations removed; throws on a syntax error, naming it. */
export function toJs(source: string): string {
  const r = ts.transpileModule(source, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    reportDiagnostics: true,
  });
  const errors = (r.diagnostics ?? []).map((d) =>
    ts.flattenDiagnosticMessageText(d.messageText, "\n"),
  );
  if (errors.length)
    throw new Error(`generated source does not parse: ${errors.join("; ")}\n${source}`);
  return r.outputText;
}

/** The named top-level functions of a generated module (its `export`s dropped). */
export function load<F extends Function>(source: string, names: readonly string[]): F[] {
  const js = toJs(source).replace(/^export /gm, "");
  return new Function(`"use strict";\n${js}\nreturn [${names.join(", ")}];`)() as F[];
}
