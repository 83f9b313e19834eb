/** The standalone artifact of the TypeScript target: a folder that runs the model without kiln.
 *
 *    model.ts       the generated kernels + a loader (artifact/model-source.ts)
 *    model.js       model.ts transpiled (ES module; imports nothing but, dynamically, node:fs)
 *    model.d.ts     its declarations
 *    manifest.json  kernels, buffers, memory plan, inputs/outputs, model, kiln version
 *    README.md      what it is and how to use it
 *    package.json   {"type": "module"}: Node reads model.js as an ES module wherever it is
 *
 *  `buildArtifact` is pure (files as strings); `writeArtifact` puts them in a folder. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Graph } from "../../ir/graph.ts";
import type { Program } from "../../lower/program.ts";
import { manifest } from "./artifact/manifest.ts";
import { literal, modelSource, transpile } from "./artifact/model-source.ts";
import { readme } from "./artifact/readme.ts";
import { artifactSpec, type ArtifactModel } from "./artifact/spec.ts";

export type { ArtifactModel } from "./artifact/spec.ts";

export interface ArtifactInput {
  /** The graph as built (before passes): inputs, params and bounds are read from it. */
  readonly graph: Graph;
  /** The optimized graph's Program. */
  readonly program: Program;
  readonly model: ArtifactModel;
  /** The generated kernel module: it exports `createSession(weights)` (runtime.ts's
   *  KernelModule). */
  readonly kernels: string;
  readonly passes: readonly string[];
  readonly kilnVersion: string;
  /** Maxima for the dims (--seq-len), as emitModule was given them. */
  readonly maxDims?: ReadonlyMap<string, number>;
}

export const ARTIFACT_FILES = [
  "model.ts",
  "model.js",
  "model.d.ts",
  "manifest.json",
  "README.md",
  "package.json",
] as const;

export type ArtifactFile = (typeof ARTIFACT_FILES)[number];

/** The files; model.ts goes through prettier when it is installed (a development dependency). */
export async function buildArtifact(a: ArtifactInput): Promise<Record<ArtifactFile, string>> {
  const maxDims = a.maxDims ?? new Map<string, number>();
  const spec = artifactSpec(a.graph, a.program, a.model, maxDims);
  const ts = await formatted(modelSource(spec, { kilnVersion: a.kilnVersion, kernels: a.kernels }));
  const { js, dts } = transpile(ts);
  const m = manifest(a.graph, a.program, a.model, spec, {
    kilnVersion: a.kilnVersion,
    target: "ts",
    passes: a.passes,
    maxDims,
  });
  return {
    "model.ts": ts,
    "model.js": js,
    "model.d.ts": dts,
    "manifest.json": literal(m) + "\n",
    "README.md": readme(spec, a.kilnVersion, { kernels: a.program.kernels.length }),
    "package.json": PACKAGE_JSON,
  };
}

/** An artifact's package.json: Node reads model.js as an ES module only with it beside it. */
export const PACKAGE_JSON =
  literal({
    name: "kiln-artifact",
    private: true,
    type: "module",
    main: "./model.js",
    types: "./model.d.ts",
    exports: { ".": { types: "./model.d.ts", default: "./model.js" } },
  }) + "\n";

/** Source through prettier when it is installed (a development dependency), for reading. */
export async function formatted(
  source: string,
  parser: "typescript" | "babel" = "typescript",
): Promise<string> {
  let prettier: typeof import("prettier");
  try {
    prettier = await import("prettier");
  } catch {
    return source;
  }
  return prettier.format(source, { parser, printWidth: 100 });
}

export function writeArtifact(dir: string, files: Record<ArtifactFile, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const name of ARTIFACT_FILES) writeFileSync(join(dir, name), files[name]);
}
