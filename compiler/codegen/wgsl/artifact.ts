/** The standalone artifact of the WGSL target: a folder that runs the model on a WebGPU device
 *  without kiln.
 *
 *    kernels/<name>.wgsl  each kernel's WGSL module, exactly as emitted (one file per kernel)
 *    kernels/decode/<name>.wgsl  with a KV cache: the decoding program's kernels (the
 *                         last-position pass, runtime/runner.ts decodingGraph), which `generate`
 *                         runs; `forward` runs kernels/<name>.wgsl
 *    model.js             ES module: the WGSL sources, the WebGPU driver (runtime/webgpu/session.ts)
 *                         and the loader (artifact/model-source.ts); `load(device, source)`.
 *                         Imports nothing but, dynamically and in Node only, node:fs
 *    model.d.ts           its declarations
 *    manifest.json        the WgslProgram's data without the sources, inputs/outputs, model,
 *                         kiln version (artifact/manifest.ts)
 *    README.md            what it is and how to use it in Node and in a browser
 *    package.json         {"type": "module"}: Node reads model.js as an ES module wherever it is
 *
 *  `buildWgslArtifact` is pure (files as strings, by path in the folder); `writeWgslArtifact`
 *  puts them in a folder, removing .wgsl files a previous compile left in kernels/ and
 *  kernels/decode/. */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Graph } from "../../ir/graph.ts";
import type { Program } from "../../lower/program.ts";
import { formatted, PACKAGE_JSON } from "../ts/artifact.ts";
import { literal, transpile } from "../ts/artifact/model-source.ts";
import { artifactSpec, type ArtifactModel } from "../ts/artifact/spec.ts";
import { gpuBytes, kernelFile, wgslManifest } from "./artifact/manifest.ts";
import { wgslModelSource } from "./artifact/model-source.ts";
import { wgslReadme } from "./artifact/readme.ts";
import type { WgslProgram } from "./program.ts";

export interface WgslArtifactInput {
  /** The graph as built (before passes): inputs, params and bounds are read from it. */
  readonly graph: Graph;
  /** The optimized graph's Program. */
  readonly program: Program;
  /** emitWgsl's result for `program`. */
  readonly wgsl: WgslProgram;
  /** The decoding program (`lower(decodingGraph(optimized graph))`) and emitWgsl's result for it,
   *  with the same limits and maxDims: what `generate` runs. Used only when both programs have a
   *  KV cache; without it generate runs `program`. */
  readonly decoding?: { readonly program: Program; readonly wgsl: WgslProgram };
  readonly model: ArtifactModel;
  readonly passes: readonly string[];
  readonly kilnVersion: string;
  /** Maxima for the dims (--seq-len), as emitWgsl was given them. */
  readonly maxDims?: ReadonlyMap<string, number>;
  /** How `wgsl.limits` were chosen, for the README and manifest: "WebGPU's default limits". */
  readonly limitsName: string;
}

/** The files besides kernels/*.wgsl, in the order they are written. */
export const WGSL_ARTIFACT_FILES = [
  "model.js",
  "model.d.ts",
  "manifest.json",
  "README.md",
  "package.json",
] as const;

/** Every file by its path in the artifact folder: kernels/<name>.wgsl, then WGSL_ARTIFACT_FILES. */
export type WgslArtifactFiles = Readonly<Record<string, string>>;

export async function buildWgslArtifact(a: WgslArtifactInput): Promise<WgslArtifactFiles> {
  const maxDims = a.maxDims ?? new Map<string, number>();
  const spec = artifactSpec(a.graph, a.program, a.model, maxDims);
  const decoding =
    a.decoding && a.wgsl.kvCache.enabled && a.decoding.wgsl.kvCache.enabled
      ? a.decoding
      : undefined;
  const source = wgslModelSource(spec, a.wgsl, {
    kilnVersion: a.kilnVersion,
    limitsName: a.limitsName,
    ...(decoding ? { decoding: decoding.wgsl } : {}),
  });
  const { js, dts } = transpile(source);
  const m = wgslManifest(a.graph, a.program, a.wgsl, a.model, spec, {
    kilnVersion: a.kilnVersion,
    passes: a.passes,
    limitsName: a.limitsName,
    ...(decoding ? { decoding } : {}),
  });
  const files: Record<string, string> = {};
  for (const k of a.wgsl.kernels) files[kernelFile(k.name)] = k.source;
  for (const k of decoding?.wgsl.kernels ?? []) files[kernelFile(k.name, "decoding")] = k.source;
  return {
    ...files,
    "model.js": await formatted(js, "babel"),
    "model.d.ts": dts,
    "manifest.json": literal(m) + "\n",
    "README.md": wgslReadme(spec, a.kilnVersion, {
      kernels: a.wgsl.kernels.length,
      limitsName: a.limitsName,
      memory: gpuBytes(a.wgsl),
      ...(decoding
        ? { decoding: { kernels: decoding.wgsl.kernels.length, memory: gpuBytes(decoding.wgsl) } }
        : {}),
    }),
    "package.json": PACKAGE_JSON,
  };
}

export function writeWgslArtifact(dir: string, files: WgslArtifactFiles): void {
  for (const sub of ["kernels", "kernels/decode"]) {
    mkdirSync(join(dir, sub), { recursive: true });
    for (const old of readdirSync(join(dir, sub)))
      if (old.endsWith(".wgsl") && !(`${sub}/${old}` in files))
        rmSync(join(dir, sub, old), { force: true });
  }
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
}
