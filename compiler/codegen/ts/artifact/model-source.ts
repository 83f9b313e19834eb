/** `model.ts` of an artifact, and its `model.js` / `model.d.ts`.
 *
 *  model.ts is one module with four parts: the loader, copied out of kiln's own files (errors,
 *  the strict JSON and safetensors readers, the sampler, runtime.ts) by inline-source.ts; SPEC,
 *  what the loader knows of this model, as a JSON literal; KERNELS, the generated kernel module
 *  (codegen/ts's emitModule) with its exports removed, inside a function so that none of its
 *  names can meet the loader's; and `load`, with the model's own `Inputs` type.
 *
 *  User strings (param, input and model names) appear only inside SPEC's JSON string literals,
 *  with U+2028/U+2029 escaped, and as property names of `Inputs`, quoted unless they are plain
 *  identifiers; comments carry none. model.js and model.d.ts come from the TypeScript compiler
 *  (the one ts-morph carries), run strict on model.ts: a type error there is a bug in kiln. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Project, ts } from "ts-morph";
import { inlineDeclarations, withoutExports } from "./inline-source.ts";
import type { ArtifactSpec } from "./runtime.ts";

const ROOT = join(import.meta.dirname, "..", "..", "..", "..");

/** The files the loader is copied from, in dependency order. */
export const LOADER_FILES = [
  "compiler/errors.ts",
  "runtime/strict-json.ts",
  "runtime/half-float.ts",
  "runtime/safetensors-dtype.ts",
  "runtime/safetensors.ts",
  "runtime/generate.ts",
  "compiler/codegen/ts/artifact/inputs.ts",
  "compiler/codegen/ts/artifact/runtime.ts",
] as const;

/** The loader's names that model.ts exports (its API's types and the error class). */
const PUBLIC = [
  "KilnError",
  "ErrorKind",
  "ModelSource",
  "Sequence",
  "ForwardResult",
  "GenerateSettings",
  "Model",
];

/** The loader's source: everything `loadModel` and the public types need. */
export function loaderSource(): string {
  const files = LOADER_FILES.map((path) => ({
    path,
    text: readFileSync(join(ROOT, path), "utf8"),
  }));
  return inlineDeclarations(files, ["loadModel", ...PUBLIC], new Set(PUBLIC));
}

/** A value as a TypeScript (or JSON) literal, a nested value on one line when it fits in
 *  `width` columns; JavaScript's line separators escaped. */
export function literal(value: unknown, width = 100, indent = ""): string {
  const flat = (JSON.stringify(value) ?? "null")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
  if (typeof value !== "object" || value === null || indent.length + flat.length <= width)
    return flat;
  const inner = indent + "  ";
  const items = Array.isArray(value)
    ? value.map((x: unknown) => inner + literal(x, width, inner))
    : Object.entries(value)
        .filter(([, x]) => x !== undefined)
        .map(([k, x]) => `${inner}${literal(k)}: ${literal(x, width, inner)}`);
  if (items.length === 0) return flat;
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return `${open}\n${items.join(",\n")}\n${indent}${close}`;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

export function inputsType(spec: ArtifactSpec): string {
  const fields = spec.inputs.map((i) => {
    const key = IDENTIFIER.test(i.key) ? i.key : literal(i.key);
    const what =
      i.vocab !== null
        ? `token ids in [0, ${i.vocab})`
        : `${i.dtype === "i32" ? "integers" : "numbers"}`;
    const len =
      typeof i.length === "number"
        ? `exactly ${i.length} of them`
        : i.maxLength !== null
          ? `at most ${i.maxLength}`
          : "any length";
    const phase = i.phase === "source" ? "; fed once per sequence (generate keeps it)" : "";
    return `  /** ${what}, ${len}${phase}. */\n  ${key}: Sequence;`;
  });
  return `export interface Inputs {\n${fields.join("\n")}\n}`;
}

const SECTION = (title: string) =>
  `// ${"─".repeat(3)} ${title} ${"─".repeat(Math.max(3, 92 - title.length))}`;

export interface ModelSourceOptions {
  readonly kilnVersion: string;
  /** The generated kernel module (emitModule's output). */
  readonly kernels: string;
}

export function modelSource(spec: ArtifactSpec, o: ModelSourceOptions): string {
  const example = spec.inputs.map(
    (i) => `${IDENTIFIER.test(i.key) ? i.key : literal(i.key)}: [1, 2, 3]`,
  );
  return [
    `/** A ${spec.kind === "model" ? "model" : spec.kind} model compiled by kiln ${o.kilnVersion} (target ts). Generated: do not edit.`,
    ` *`,
    ` *    import { load } from "./model.js";`,
    ` *    const model = await load("path/to/checkpoint"); // Node; anywhere: the bytes of model.safetensors`,
    ` *    const { logits, rows, cols } = model.forward({ ${example.join(", ")} });`,
    ` *`,
    ` *  README.md describes the API; manifest.json lists the kernels, buffers and memory plan. */`,
    "",
    SECTION("the loader: copied from kiln's runtime"),
    "",
    loaderSource(),
    "",
    SECTION("this model"),
    "",
    `const SPEC: ArtifactSpec = ${literal(spec)};`,
    "",
    SECTION("the kernels: generated from the optimized graph"),
    "",
    "const KERNELS: KernelModule = (() => {",
    withoutExports({ path: "kernels", text: o.kernels }).trim(),
    "  return { createSession };",
    "})();",
    "",
    SECTION("the API"),
    "",
    "/** What `forward` and `generate` take: one sequence per model input. */",
    inputsType(spec),
    "",
    "/** Reads the weights (a checkpoint folder or model.safetensors path in Node, or the file's",
    " *  bytes anywhere), checks them against the model, and loads them into the kernels. */",
    "export function load(source: ModelSource): Promise<Model<Inputs>> {",
    "  return loadModel<Inputs>(SPEC, KERNELS, source);",
    "}",
    "",
  ].join("\n");
}

export interface Transpiled {
  readonly js: string;
  readonly dts: string;
}

const COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
  strict: true,
  declaration: true,
  noEmitOnError: true,
  types: [],
};

let project: Project | undefined;

/** model.ts → model.js + model.d.ts, type-checked strictly first. One in-memory project serves
 *  every call, so the standard library's declarations are parsed once. */
export function transpile(modelTs: string): Transpiled {
  project ??= new Project({ useInMemoryFileSystem: true, compilerOptions: COMPILER_OPTIONS });
  project.createSourceFile("/model.ts", modelTs, { overwrite: true });
  const diagnostics = project.getPreEmitDiagnostics();
  if (diagnostics.length)
    throw new Error(
      `the generated model.ts does not type-check (a bug in kiln):\n${project.formatDiagnosticsWithColorAndContext(diagnostics.slice(0, 5))}`,
    );
  const out = project.emitToMemory().getFiles();
  const text = (ext: string) => {
    const f = out.find((x) => x.filePath.endsWith(ext));
    if (!f) throw new Error(`the TypeScript compiler emitted no ${ext}`);
    return f.text;
  };
  return { js: text("/model.js"), dts: text("/model.d.ts") };
}
