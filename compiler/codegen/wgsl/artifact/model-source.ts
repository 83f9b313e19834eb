/** The TypeScript source of a WGSL artifact's `model.js` (its `model.d.ts` comes from the same
 *  strict compile as the ts artifact's: ts/artifact/model-source.ts's `transpile`).
 *
 *  One module, five parts:
 *  - the loader, copied out of kiln's own files by inline-source.ts: the ts artifact's (errors,
 *    the strict JSON and safetensors readers, the sampler, ts/artifact/runtime.ts) plus
 *    ./runtime.ts, its asynchronous GPU half;
 *  - SPEC, what the loader knows of this model (ts/artifact/spec.ts), as a JSON literal;
 *  - DRIVER, runtime/webgpu/session.ts copied whole (it imports nothing) with its exports
 *    removed, inside a function so that none of its names can meet the loader's;
 *  - the program: LIMITS (the profile the kernels were compiled against), PROGRAM (the part of
 *    the WgslProgram the driver reads, typed by the driver's own DriverProgram) and
 *    KERNEL_SOURCES (each kernel's WGSL, exactly as kernels/<name>.wgsl holds it); then, when
 *    the model has a KV cache, the decoding program (the last-position pass: what `generate`
 *    runs) as DECODING_PROGRAM and DECODING_KERNEL_SOURCES (kernels/decode/<name>.wgsl), else
 *    null;
 *  - `load(device, source)`, with the model's own `Inputs` type.
 *
 *  User strings (param, input and model names) appear only inside JSON string literals, with
 *  U+2028/U+2029 escaped (`literal`), and as property names of `Inputs`, quoted unless they are
 *  plain identifiers; the WGSL sources carry them only as comment text (codegen/names.ts). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { DriverProgram } from "../../../../runtime/webgpu/session.ts";
import { inlineDeclarations, withoutExports } from "../../ts/artifact/inline-source.ts";
import { inputsType, LOADER_FILES, literal } from "../../ts/artifact/model-source.ts";
import type { ArtifactSpec } from "../../ts/artifact/runtime.ts";
import type { WgslProgram } from "../program.ts";

const ROOT = join(import.meta.dirname, "..", "..", "..", "..");

/** The files the loader is copied from, in dependency order. */
export const WGSL_LOADER_FILES = [
  ...LOADER_FILES,
  "compiler/codegen/wgsl/artifact/runtime.ts",
] as const;

/** The WebGPU driver, copied whole. */
export const DRIVER_FILE = "runtime/webgpu/session.ts";

/** The loader's names that model.js exports (its API's types and the error class). */
const PUBLIC = [
  "KilnError",
  "ErrorKind",
  "ModelSource",
  "Sequence",
  "ForwardResult",
  "GenerateSettings",
  "GpuModel",
];

const read = (path: string) => ({ path, text: readFileSync(join(ROOT, path), "utf8") });

/** The loader's source: everything `loadGpuModel` and the public types need. */
export function wgslLoaderSource(): string {
  return inlineDeclarations(
    WGSL_LOADER_FILES.map(read),
    ["loadGpuModel", ...PUBLIC],
    new Set(PUBLIC),
  );
}

/** The driver's source, exports removed (it goes inside a function body). */
export function driverSource(): string {
  return withoutExports(read(DRIVER_FILE)).trim();
}

type ProgramData = Omit<DriverProgram, "kernels" | "limits"> & {
  readonly kernels: readonly Omit<DriverProgram["kernels"][number], "source">[];
};

/** What the driver reads of `w`, every field named (a required field the driver adds is a type
 *  error here), the kernels' sources left out; `limits` is set apart as LIMITS. */
export function programData(w: WgslProgram): ProgramData {
  return {
    name: w.name,
    dims: w.dims.map((d) => ({ symbol: d.symbol, capacity: d.capacity })),
    buffers: w.buffers.map((b) => ({
      id: b.id,
      node: b.node,
      dtype: b.dtype,
      role: b.role,
      phase: b.phase,
      ...(b.name !== undefined ? { name: b.name } : {}),
      shape: b.shape,
      capacityElements: b.capacityElements,
      chunkElements: b.chunkElements,
      ...(b.slot !== undefined ? { slot: b.slot } : {}),
    })),
    slots: w.slots.map((s) => ({ elements: s.elements, chunkElements: s.chunkElements })),
    kernels: w.kernels.map((k) => ({
      name: k.name,
      phase: k.phase,
      bindings: k.bindings.map((b) => ({ buffer: b.buffer, chunk: b.chunk, access: b.access })),
      workgroups: { count: k.workgroups.count, per: k.workgroups.per },
    })),
    inputs: w.inputs,
    outputs: w.outputs,
    seqDim: w.seqDim,
    kvCache: w.kvCache,
  };
}

const SECTION = (title: string) =>
  `// ${"─".repeat(3)} ${title} ${"─".repeat(Math.max(3, 92 - title.length))}`;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

export interface WgslModelSourceOptions {
  readonly kilnVersion: string;
  /** How the limits were chosen, for the header: "WebGPU's defaults". */
  readonly limitsName: string;
  /** The decoding program (emitted against the same limits), which `generate` runs. */
  readonly decoding?: WgslProgram;
}

export function wgslModelSource(
  spec: ArtifactSpec,
  w: WgslProgram,
  o: WgslModelSourceOptions,
): string {
  const d = o.decoding;
  const example = spec.inputs.map(
    (i) => `${IDENTIFIER.test(i.key) ? i.key : literal(i.key)}: [1, 2, 3]`,
  );
  return [
    `/** ${spec.kind === "model" ? "A model written in kiln's DSL" : `A ${spec.kind} model`}, compiled by kiln ${o.kilnVersion} (target wgsl) into ${w.kernels.length} WGSL kernels`,
    ` *  and the WebGPU driver that runs them on the GPUDevice you pass. Generated: do not edit.`,
    ` *`,
    ` *    import { load } from "./model.js";`,
    ` *    const model = await load(device, "path/to/checkpoint"); // Node; anywhere: the bytes of model.safetensors`,
    ` *    const { logits, rows, cols } = await model.forward({ ${example.join(", ")} });`,
    ` *`,
    ` *  The kernels were compiled against ${o.limitsName}: any WebGPU device runs them.`,
    ` *  README.md describes the API; manifest.json lists the kernels, buffers and storage;`,
    ` *  kernels/<name>.wgsl holds each kernel's source. */`,
    "",
    SECTION("the loader: copied from kiln's runtime"),
    "",
    wgslLoaderSource(),
    "",
    SECTION("this model"),
    "",
    `const SPEC: ArtifactSpec = ${literal(spec)};`,
    "",
    SECTION("the WebGPU driver: copied from kiln's runtime (runtime/webgpu/session.ts)"),
    "",
    "const DRIVER = (() => {",
    driverSource(),
    "  return { loadModel };",
    "})();",
    "",
    SECTION("the program: generated from the optimized graph"),
    "",
    "/** What the driver runs (its DriverProgram). */",
    "type ProgramData = Parameters<typeof DRIVER.loadModel>[1];",
    "type KernelData = ProgramData['kernels'][number];",
    "",
    `/** The device limits the kernels were compiled against (${o.limitsName}). */`,
    `const LIMITS = ${literal(w.limits)};`,
    "",
    "/** Dims, buffers and their storage, the kernels in dispatch order (without their sources). */",
    'const PROGRAM: Omit<ProgramData, "kernels" | "limits"> & {',
    '  readonly kernels: readonly Omit<KernelData, "source">[];',
    `} = ${literal(programData(w))};`,
    "",
    "/** Each kernel's WGSL module, in dispatch order; kernels/<name>.wgsl holds the same text. */",
    `const KERNEL_SOURCES: readonly string[] = ${literal(
      w.kernels.map((k) => k.source),
      0,
    )};`,
    "",
    "/** The decoding program (the last position's logits only), which `generate` runs, loaded on",
    " *  its first call; its kernels' sources are kernels/decode/<name>.wgsl. Null: generate runs",
    " *  PROGRAM. */",
    'const DECODING_PROGRAM: (Omit<ProgramData, "kernels" | "limits"> & {',
    '  readonly kernels: readonly Omit<KernelData, "source">[];',
    `}) | null = ${d ? literal(programData(d)) : "null"};`,
    "",
    `const DECODING_KERNEL_SOURCES: readonly string[] = ${literal(
      d ? d.kernels.map((k) => k.source) : [],
      0,
    )};`,
    "",
    SECTION("the API"),
    "",
    "/** What `forward` and `generate` take: one sequence per model input. */",
    inputsType(spec),
    "",
    "/** The loaded model: the ts artifact's Model, asynchronous. */",
    "export type Model<I = Inputs> = GpuModel<I>;",
    "",
    "/** Loads the model onto `device` (a GPUDevice: navigator.gpu's in a browser, the webgpu",
    " *  package's in Node): reads the weights (a checkpoint folder or model.safetensors path in",
    " *  Node, or the file's bytes anywhere), checks them against the model, compiles the kernels",
    " *  and uploads the weights. */",
    "export function load(device: GPUDevice, source: ModelSource): Promise<Model> {",
    "  const program: ProgramData = {",
    "    ...PROGRAM,",
    "    limits: LIMITS,",
    "    kernels: PROGRAM.kernels.map((k, i) => ({ ...k, source: KERNEL_SOURCES[i] })),",
    "  };",
    "  const decoding: ProgramData | null = DECODING_PROGRAM && {",
    "    ...DECODING_PROGRAM,",
    "    limits: LIMITS,",
    "    kernels: DECODING_PROGRAM.kernels.map((k, i) => ({ ...k, source: DECODING_KERNEL_SOURCES[i] })),",
    "  };",
    "  return loadGpuModel<Inputs>(",
    "    SPEC,",
    "    {",
    "      device,",
    "      limits: LIMITS,",
    "      load: (weights) => DRIVER.loadModel(device, program, weights),",
    "      ...(decoding",
    "        ? { loadDecoding: (weights: (name: string) => Float32Array | undefined) => DRIVER.loadModel(device, decoding, weights) }",
    "        : {}),",
    "    },",
    "    source,",
    "  );",
    "}",
    "",
  ].join("\n");
}
