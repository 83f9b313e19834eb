/** `manifest.json` of a WGSL artifact: the WgslProgram's data without the kernels' sources (those
 *  are kernels/<name>.wgsl, named by each kernel's `file`), with what the ts artifact's manifest
 *  says of the model around it — the graph's inputs and outputs with their types, the params and
 *  checkpoint layout, whether generate applies, the passes, the model's kind and config, the
 *  kiln version — and the GPU memory the artifact allocates at capacity: the model's (params and
 *  the load phase's buffers, shared by sessions) and each session's (slots, state, inputs,
 *  outputs). */
import type { Graph } from "../../../ir/graph.ts";
import { nodeData } from "../../../ir/graph.ts";
import type { Dim } from "../../../ir/shape.ts";
import type { Program } from "../../../lower/program.ts";
import type { ArtifactSpec } from "../../ts/artifact/runtime.ts";
import type { ArtifactModel } from "../../ts/artifact/spec.ts";
import type { WgslProgram } from "../program.ts";

export interface WgslManifestOptions {
  readonly kilnVersion: string;
  /** The passes the graph was optimized with, in order. */
  readonly passes: readonly string[];
  /** How the limits were chosen ("WebGPU defaults"). */
  readonly limitsName: string;
  /** The decoding program (the last-position pass) and its WGSL, which `generate` runs. */
  readonly decoding?: { readonly program: Program; readonly wgsl: WgslProgram };
}

/** The file a kernel's source is written to, relative to the artifact folder: kernels/<name>.wgsl
 *  for the full program's, kernels/decode/<name>.wgsl for the decoding program's (the two
 *  programs' kernel names overlap). Kernel names are kiln's own (`k12_matmul`, lower.ts);
 *  anything else is refused rather than used as a path. */
export function kernelFile(name: string, program: "full" | "decoding" = "full"): string {
  if (!/^[A-Za-z0-9_]+$/.test(name))
    throw new Error(`wgsl artifact: kernel name ${JSON.stringify(name)} is not a plain name`);
  return program === "full" ? `kernels/${name}.wgsl` : `kernels/decode/${name}.wgsl`;
}

const typeOf = (g: Graph, k: string) => {
  const t = nodeData(g, k).type;
  return { name: k, dtype: t.dtype, shape: t.shape as readonly Dim[] };
};

/** Bytes the driver allocates at capacity (every element 4 bytes, every buffer at least 4). */
export function gpuBytes(w: WgslProgram): { model: number; session: number } {
  const bytes = (elements: number) => Math.max(4, elements * 4);
  let model = 0;
  let session = 0;
  for (const b of w.buffers) {
    if (b.phase === "load") model += bytes(b.capacityElements);
    else if (b.slot === undefined) session += bytes(b.capacityElements);
  }
  for (const s of w.slots) session += bytes(s.elements);
  return { model, session };
}

/** The kernels of `w` as the manifest lists them, checked against `program`'s. */
function kernelsOf(program: Program, w: WgslProgram, which: "full" | "decoding") {
  return w.kernels.map((k, i) => {
    const source = program.kernels[i];
    if (source?.name !== k.name)
      throw new Error(`wgsl artifact: kernel ${i} is ${k.name} in WGSL, not in the program`);
    return {
      name: k.name,
      file: kernelFile(k.name, which),
      family: k.family,
      phase: k.phase,
      node: source.node,
      covers: source.covers,
      bindings: k.bindings,
      workgroups: k.workgroups,
      workgroupSize: k.workgroupSize,
      workgroupBytes: k.workgroupBytes,
    };
  });
}

export function wgslManifest(
  graph: Graph,
  program: Program,
  w: WgslProgram,
  model: ArtifactModel,
  spec: ArtifactSpec,
  o: WgslManifestOptions,
): object {
  const d = o.decoding;
  return {
    kiln: o.kilnVersion,
    target: "wgsl",
    model: { kind: model.kind, name: model.name, config: model.config },
    inputs: spec.inputs.map((i) => ({
      ...typeOf(graph, i.name),
      key: i.key,
      phase: i.phase,
      maxLength: i.maxLength,
      vocab: i.vocab,
    })),
    outputs: graph.outputs.map((k) => typeOf(graph, k)),
    params: spec.params,
    layout: spec.layout,
    generate:
      spec.noGenerate === null
        ? { available: true, program: d ? "decoding" : "full" }
        : { available: false, reason: spec.noGenerate },
    passes: o.passes,
    limits: { profile: o.limitsName, ...w.limits },
    dims: w.dims,
    bounds: w.bounds,
    seqDim: w.seqDim,
    kvCache: w.kvCache,
    kernels: kernelsOf(program, w, "full"),
    buffers: w.buffers,
    slots: w.slots,
    memory: { ...gpuBytes(w), note: "bytes of GPU buffers at capacity: per model, per session" },
    decoding: d
      ? {
          note: "the program generate runs (the last-position pass: the last position's logits only, [1, vocab]), loaded on the first generate; forward runs the program above",
          outputs: d.program.outputs.map((id) => ({
            name: d.program.buffers[id].name ?? d.program.buffers[id].node,
            shape: d.program.buffers[id].shape,
          })),
          dims: d.wgsl.dims,
          seqDim: d.wgsl.seqDim,
          kvCache: d.wgsl.kvCache,
          kernels: kernelsOf(d.program, d.wgsl, "decoding"),
          buffers: d.wgsl.buffers,
          slots: d.wgsl.slots,
          memory: {
            ...gpuBytes(d.wgsl),
            note: "bytes of GPU buffers at capacity, once generate has run: its own copy of the params and load-phase buffers, and its session's",
          },
        }
      : null,
  };
}
