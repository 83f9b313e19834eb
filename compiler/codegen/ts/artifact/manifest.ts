/** `manifest.json` of an artifact: what was compiled and how it runs, for people and tools.
 *  Kernels in dispatch order (name, family, phase, the IR nodes each covers), every buffer, the
 *  memory plan as the kernels use it (planned at the capacity: every dim at its bound or
 *  --seq-len, no cached positions — the largest prefill, whose plan holds for every smaller
 *  call), the graph's
 *  inputs and outputs with their types, the model's kind and config, and the kiln version. */
import type { Graph } from "../../../ir/graph.ts";
import { nodeData } from "../../../ir/graph.ts";
import type { Dim } from "../../../ir/shape.ts";
import { planMemory } from "../../../lower/memory-plan.ts";
import type { Program } from "../../../lower/program.ts";
import type { ArtifactSpec } from "./runtime.ts";
import type { ArtifactModel } from "./spec.ts";

export interface ManifestOptions {
  readonly kilnVersion: string;
  readonly target: "ts";
  /** The passes the graph was optimized with, in order. */
  readonly passes: readonly string[];
  /** Maxima for the dims (--seq-len), as emitModule was given them. */
  readonly maxDims: ReadonlyMap<string, number>;
}

/** Bytes per element and arena alignment of the TypeScript session (codegen/ts/session.ts):
 *  every element 4 bytes, offsets aligned to 16 elements. */
const ELEMENT_BYTES = 4;
const ALIGN_BYTES = 64;

/** The binding the kernels' arena is planned at (codegen/ts/session.ts's capacity): every
 *  bounded dim at its bound, tightened by maxDims, and a KV cache's cached length at 0. */
export function capacity(p: Program, maxDims: ReadonlyMap<string, number>): Map<string, number> {
  const cap = new Map<string, number>();
  for (const b of p.bounds) cap.set(b.dim, b.max);
  for (const [d, n] of maxDims) cap.set(d, Math.min(n, cap.get(d) ?? Infinity));
  if (p.kvCache.enabled) cap.set(p.kvCache.past, 0);
  return cap;
}

const typeOf = (g: Graph, k: string) => {
  const t = nodeData(g, k).type;
  return { name: k, dtype: t.dtype, shape: t.shape as readonly Dim[] };
};

export function manifest(
  graph: Graph,
  program: Program,
  model: ArtifactModel,
  spec: ArtifactSpec,
  o: ManifestOptions,
): object {
  const bindings = capacity(program, o.maxDims);
  const plan = planMemory(program, bindings, { align: ALIGN_BYTES, bytes: () => ELEMENT_BYTES });
  return {
    kiln: o.kilnVersion,
    target: o.target,
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
        ? { available: true }
        : { available: false, reason: spec.noGenerate },
    passes: o.passes,
    kvCache: program.kvCache.enabled
      ? {
          enabled: true,
          capacity: program.kvCache.capacity ?? null,
          entries: program.kvCache.entries,
        }
      : { enabled: false, reason: program.kvCache.reason },
    bounds: program.bounds,
    kernels: program.kernels.map((k) => ({
      name: k.name,
      family: k.family,
      phase: k.phase,
      node: k.node,
      covers: k.covers,
      inputs: k.inputs.map((v) => v.buffer),
      output: k.output,
      ...(k.alsoWrites.length ? { alsoWrites: k.alsoWrites } : {}),
    })),
    buffers: program.buffers.map((b) => ({
      id: b.id,
      node: b.node,
      role: b.role,
      phase: b.phase,
      dtype: b.dtype,
      shape: b.shape,
      ...(b.name !== undefined ? { name: b.name } : {}),
    })),
    memory: {
      bindings: Object.fromEntries(bindings),
      align: ALIGN_BYTES,
      arenaBytes: plan.arenaBytes,
      peakBytes: plan.peakBytes,
      unplannedBytes: plan.unplannedBytes,
      liveBytes: plan.liveBytes,
      temps: [...plan.offsets].map(([id, offset]) => ({
        buffer: id,
        offset,
        bytes: plan.sizes.get(id)!,
        first: plan.lifetimes.get(id)!.first,
        last: plan.lifetimes.get(id)!.last,
      })),
    },
  };
}
