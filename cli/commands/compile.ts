import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { KilnError, fail } from "../../compiler/errors.ts";
import { isModelDef, overrideConfig, type ConfigValue } from "../../compiler/dsl/model.ts";
import type { Graph } from "../../compiler/ir/graph.ts";
import { dimSymbols } from "../../compiler/ir/shape.ts";
import { lower } from "../../compiler/lower/lower.ts";
import { runPipeline } from "../../compiler/passes/pipeline.ts";
import type { ArtifactModel } from "../../compiler/codegen/ts/artifact.ts";
import { loadCheckpoint } from "../../runtime/checkpoint.ts";
import { intFlag, onePositional, parse } from "../args.ts";
import type { IO } from "../io.ts";
import { loadModelGraph } from "../load-model.ts";
import { PASS_HELP, PASS_OPTIONS, passFlags } from "../pass-flags.ts";

export const compileHelp = `kiln compile <model|checkpoint-dir> [--target ts|wgsl] --out DIR [options]

Compiles a model into a standalone artifact: a folder that runs it without kiln.
<model> is a DSL model file (models/gpt2.ts, my-model.ts), a built-in name (gpt2, seq2seq), or a
checkpoint folder (its config.json decides the model; the weights are checked, not copied).

--target ts (the default): TypeScript kernels on the CPU
  DIR/model.ts        the generated kernels and a loader (safetensors reader, input checks, generate)
  DIR/model.js        the same as an ES module (no imports; node:fs only when given a path)
  DIR/model.d.ts      its types
  DIR/manifest.json   kernels in dispatch order, buffers, memory plan, inputs/outputs, model, version
  DIR/README.md       how to use it in Node and in a browser
  DIR/package.json    {"type": "module"}

--target wgsl: WGSL kernels on a WebGPU device the caller passes (load(device, source))
  DIR/kernels/*.wgsl  one file per kernel, exactly as model.js runs it
  DIR/kernels/decode/*.wgsl  with a KV cache: the decoding program's kernels (the last
                      position only), which generate runs; forward runs kernels/*.wgsl
  DIR/model.js        the kernels, the WebGPU driver and the loader as an ES module (no imports;
                      node:fs only when given a path; the webgpu package or navigator.gpu is yours)
  DIR/model.d.ts      its types
  DIR/manifest.json   kernels (bindings, workgroups), buffers and storage, dims, inputs/outputs,
                      model, version
  DIR/README.md       how to use it in Node (npm install webgpu) and in a browser
  DIR/package.json    {"type": "module"}
  The kernels are compiled against WebGPU's default limits, so they run on any WebGPU device.

  --target ts|wgsl      ts (the default) or wgsl, as above
  --out DIR             the folder to write (created if missing; these files are overwritten)
  --config key=value    override a default of a model file's config (repeatable)
  --seq-len N           the longest sequence the artifact accepts (default: the model's bound)
${PASS_HELP}  (IR printed after passes goes to stderr)
`;

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BUILT_IN: Readonly<Record<string, string>> = {
  gpt2: "models/gpt2.ts",
  seq2seq: "models/seq2seq.ts",
};

function targetFlag(t: string | undefined): "ts" | "wgsl" {
  if (t === undefined || t === "ts") return "ts";
  if (t === "wgsl") return "wgsl";
  return fail("usage", "--target", `unknown target ${JSON.stringify(t)} (ts, wgsl)`);
}

function kilnVersion(): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

/** The graph and what the artifact says of the model. A checkpoint is loaded whole: its weights
 *  are checked against the model (and a seq2seq positional table fixes the context), so an
 *  artifact is never compiled for a checkpoint kiln itself would refuse. */
async function loadModel(
  spec: string,
  configPairs: readonly string[],
): Promise<{ graph: Graph; model: ArtifactModel }> {
  if (existsSync(spec) && statSync(spec).isDirectory()) {
    if (configPairs.length)
      fail(
        "usage",
        "--config",
        "applies to model files, not checkpoints (their config.json decides)",
      );
    const ckpt = loadCheckpoint(spec);
    return {
      graph: ckpt.graph,
      model: { kind: ckpt.model.kind, name: ckpt.graph.name, config: ckpt.model.config },
    };
  }
  const graph = await loadModelGraph(spec, configPairs); // checks the file and the overrides
  const path =
    Object.prototype.hasOwnProperty.call(BUILT_IN, spec) && !existsSync(spec)
      ? join(ROOT, BUILT_IN[spec])
      : resolve(spec);
  const mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
  if (!isModelDef(mod.default)) throw new Error(`${spec}: the model file changed while loading`);
  const def = mod.default;
  return {
    graph,
    model: {
      kind: "model",
      name: def.name,
      config: {
        ...def.defaults,
        ...overrideConfig(def.defaults, configPairs, "--config"),
      } as Readonly<Record<string, ConfigValue>>,
    },
  };
}

export async function compile(argv: readonly string[], io: IO): Promise<string> {
  const { values, positionals } = parse("compile", argv, {
    target: { type: "string" },
    out: { type: "string" },
    config: { type: "string", multiple: true },
    "seq-len": { type: "string" },
    ...PASS_OPTIONS,
  });
  const spec = onePositional("compile", positionals, "model");
  const target = targetFlag(values.target);
  const out = values.out;
  if (out === undefined || out === "")
    fail("usage", "kiln compile", "--out DIR is required (the folder to write the artifact to)");
  if (existsSync(out) && !statSync(out).isDirectory())
    fail("usage", "--out", `${out} exists and is not a folder`);
  const seqLen = intFlag("--seq-len", values["seq-len"]);
  if (seqLen !== undefined && seqLen < 1)
    fail("usage", "--seq-len", `must be at least 1, got ${seqLen}`);
  const flags = passFlags(values, io.err);

  const { graph, model } = await loadModel(spec, values.config ?? []);
  const result = runPipeline(graph, flags.passes, flags.afterPass);
  const program = lower(result.graph);
  const maxDims = new Map<string, number>();
  if (seqLen !== undefined)
    for (const k of graph.inputs)
      for (const d of graph.nodes.getNodeAttribute(k, "type").shape)
        for (const s of dimSymbols(d)) maxDims.set(s, seqLen);

  const passes = result.stats.map((s) => s.name);
  let files: Readonly<Record<string, string>>;
  let write: (dir: string) => void;
  let kernels: number;
  // The code generators (ts-morph, the TypeScript compiler) load only when compiling.
  if (target === "wgsl") {
    const { emitWgsl } = await import("../../compiler/codegen/wgsl/program.ts");
    const { WEBGPU_DEFAULTS } = await import("../../compiler/codegen/wgsl/limits.ts");
    const { buildWgslArtifact, writeWgslArtifact } =
      await import("../../compiler/codegen/wgsl/artifact.ts");
    const wgsl = emitWgsl(program, {
      limits: WEBGPU_DEFAULTS,
      maxDims,
      graph: result.graph,
      source: graph,
    });
    // With a KV cache, generate runs the decoding program (the last position's logits only), as
    // kiln's own runners do.
    let decoding: { program: typeof program; wgsl: typeof wgsl } | undefined;
    if (wgsl.kvCache.enabled) {
      const { decodingGraph } = await import("../../runtime/runner.ts");
      const dg = decodingGraph(result.graph);
      const dp = lower(dg);
      const opts = { limits: WEBGPU_DEFAULTS, maxDims, graph: dg, source: graph };
      decoding = { program: dp, wgsl: emitWgsl(dp, opts) };
    }
    const built = await buildWgslArtifact({
      graph,
      program,
      wgsl,
      ...(decoding ? { decoding } : {}),
      model,
      passes,
      kilnVersion: kilnVersion(),
      maxDims,
      limitsName: "WebGPU's default limits",
    });
    files = built;
    kernels = wgsl.kernels.length;
    write = (dir) => writeWgslArtifact(dir, built);
  } else {
    const { emitModule } = await import("../../compiler/codegen/ts/module.ts");
    const { buildArtifact, writeArtifact } = await import("../../compiler/codegen/ts/artifact.ts");
    const built = await buildArtifact({
      graph,
      program,
      model,
      kernels: emitModule(program, { graph: result.graph, maxDims }),
      passes,
      kilnVersion: kilnVersion(),
      maxDims,
    });
    files = built;
    kernels = program.kernels.length;
    write = (dir) => writeArtifact(dir, built);
  }
  try {
    write(out);
  } catch (e) {
    if (e instanceof KilnError) throw e;
    fail("usage", "--out", `cannot write ${out}: ${(e as Error).message}`);
  }
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  const size = (s: string) => kib(Buffer.byteLength(s));
  const shown = Object.entries(files).filter(([name]) => !name.startsWith("kernels/"));
  const wgslFiles = Object.entries(files).filter(([name]) => name.startsWith("kernels/"));
  const wgslBytes = wgslFiles.reduce((n, [, text]) => n + Buffer.byteLength(text), 0);
  return (
    `compiled ${model.kind === "model" ? `model ${JSON.stringify(model.name)}` : `${model.kind} checkpoint`} for --target ${target}: ${kernels} kernels → ${out}\n` +
    (wgslFiles.length
      ? `  ${"kernels/*.wgsl".padEnd(14)} ${kib(wgslBytes).padStart(10)} (${wgslFiles.length} files)\n`
      : "") +
    shown.map(([name, text]) => `  ${name.padEnd(14)} ${size(text).padStart(10)}\n`).join("")
  );
}
