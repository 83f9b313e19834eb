/** emitWgsl — a Program as WGSL kernels plus the data a WebGPU runtime needs to run them: the
 *  dims (the `Dims` uniform's fields), every buffer's size and storage (chunks, or a slot shared
 *  with other temps), the kernels in dispatch order with their bindings and workgroup counts.
 *  Plain JSON-able data (`WgslProgram`): runtime/webgpu runs it, and `kiln compile --target wgsl`
 *  writes it as manifest.json next to kernels/*.wgsl.
 *
 *  Storage rules:
 *  - Every buffer is allocated once at its capacity (every dim at its largest: bounds, maxDims;
 *    the cached length P at 0, as no temp's shape mentions it), so bind groups are made once.
 *  - Temps of the source and step phases share GPUBuffers ("slots"): a temp takes the first slot
 *    whose occupants' lifetimes (memory-plan.ts) do not overlap its own. A kernel's operands and
 *    output are all live at that kernel, so they are always in different slots — a kernel never
 *    binds one GPUBuffer twice (WebGPU forbids a writable binding aliasing another).
 *  - A buffer (or slot) larger than the profile's binding size or buffer size is stored as
 *    chunks of `chunkElements` elements, each its own GPUBuffer (kernel.ts binds them all).
 *  - Each kernel is checked against the limits profile as it is generated (kernel.ts); the
 *    first that does not fit fails compilation with a "limit" error naming it. */
import { assertNever, fail } from "../../errors.ts";
import type { DType } from "../../ir/dtype.ts";
import type { Graph } from "../../ir/graph.ts";
import type { Dim } from "../../ir/shape.ts";
import { bufferElements, isPlanned, lifetimes } from "../../lower/memory-plan.ts";
import type { BufferRole, Kernel, Phase, Program } from "../../lower/program.ts";
import { symProduct, type SymInt } from "../../lower/sym.ts";
import { kernelDoc } from "../ts/module.ts";
import { capacityOf, dimVars } from "../ts/session.ts";
import type { BufferLayout, WgslKernel } from "./kernel.ts";
import { WgslScope } from "./kernel.ts";
import { WEBGPU_DEFAULTS, type Limits } from "./limits.ts";
import { attention, attentionCached } from "./kernels-attention.ts";
import * as map from "./kernels-map.ts";
import { matmul } from "./kernels-matmul.ts";
import { layerNorm, reduce, softmax } from "./kernels-reduce.ts";

export interface WgslBuffer extends BufferLayout {
  readonly id: number;
  readonly node: string;
  readonly dtype: DType;
  readonly role: BufferRole;
  readonly phase: Phase;
  /** The input's name, or the param's checkpoint tensor name. */
  readonly name?: string;
  readonly shape: readonly Dim[];
  /** Elements at the run's dims. */
  readonly elements: SymInt;
  /** Elements allocated (at capacity; at least 1). */
  readonly capacityElements: number;
  /** The slot it lives in (planned temps), else undefined: a storage of its own. */
  readonly slot?: number;
}

export interface WgslSlot extends BufferLayout {
  readonly elements: number;
}

export interface WgslProgram {
  readonly name: string;
  /** The `Dims` uniform's fields in order: field `d<i>` holds `dims[i].symbol`. */
  readonly dims: readonly { readonly symbol: string; readonly capacity: number | null }[];
  readonly buffers: readonly WgslBuffer[];
  readonly slots: readonly WgslSlot[];
  /** Dispatch order: load, source, step. */
  readonly kernels: readonly WgslKernel[];
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
  readonly bounds: Program["bounds"];
  readonly seqDim: string | null;
  readonly kvCache:
    | {
        readonly enabled: true;
        readonly past: string;
        /** Positions a session may hold (cached + new ≤ capacity): the cache buffers' rows, or
         *  Number.MAX_SAFE_INTEGER when nothing is cached (no attention), as P then bounds nothing. */
        readonly capacity: number;
      }
    | { readonly enabled: false; readonly reason: string };
  readonly limits: Limits;
}

export interface WgslOptions {
  readonly limits?: Limits;
  /** Maxima for dims the graph does not bound (or tighter ones). */
  readonly maxDims?: ReadonlyMap<string, number>;
  /** For the kernels' header comments (see the TypeScript backend's EmitOptions). */
  readonly graph?: Graph;
  readonly source?: Graph;
}

function layout(elements: number, limits: Limits): BufferLayout {
  const perChunk = Math.floor(
    Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 4,
  );
  const chunks = Math.max(1, Math.ceil(elements / perChunk));
  return { chunks, chunkElements: chunks === 1 ? elements : perChunk };
}

export function emitWgsl(p: Program, o: WgslOptions = {}): WgslProgram {
  const limits = o.limits ?? WEBGPU_DEFAULTS;
  const vars = dimVars(p);
  const capacity = capacityOf(p, o.maxDims);
  for (const [s] of vars)
    if (!capacity.has(s) && !(p.kvCache.enabled && p.kvCache.past === s))
      fail(
        "usage",
        `dim ${s}`,
        "has no bound to size the GPU buffers with: give it a maximum (maxDims, --seq-len)",
      );
  // Index checks see P at the cache's capacity; sizes see it at 0 (program.ts's storage rule).
  const reach = new Map(capacity);
  if (p.kvCache.enabled) reach.set(p.kvCache.past, p.kvCache.capacity ?? 0);

  const sizeAt = (id: number): number => {
    const n = bufferElements(p.buffers[id], capacity);
    return Math.max(1, n);
  };
  // Slots for planned temps, by first fit over lifetimes.
  const life = lifetimes(p);
  const slotOf = new Map<number, number>();
  const slotEnds: number[] = [];
  const slotSizes: number[] = [];
  for (const [id, l] of [...life].sort((a, b) => a[1].first - b[1].first || a[0] - b[0])) {
    let s = slotEnds.findIndex((end) => end < l.first);
    if (s < 0) {
      s = slotEnds.length;
      slotEnds.push(-1);
      slotSizes.push(0);
    }
    slotEnds[s] = l.last;
    slotSizes[s] = Math.max(slotSizes[s], sizeAt(id));
    slotOf.set(id, s);
  }
  const slots: WgslSlot[] = slotSizes.map((n) => ({ elements: n, ...layout(n, limits) }));
  const buffers: WgslBuffer[] = p.buffers.map((b) => {
    const planned = isPlanned(b) && slotOf.has(b.id);
    const capacityElements = planned ? slots[slotOf.get(b.id)!].elements : sizeAt(b.id);
    const lay = planned ? slots[slotOf.get(b.id)!] : layout(capacityElements, limits);
    return {
      id: b.id,
      node: b.node,
      dtype: b.dtype,
      role: b.role,
      phase: b.phase,
      ...(b.name !== undefined ? { name: b.name } : {}),
      shape: b.shape,
      elements: symProduct(b.shape),
      capacityElements,
      chunks: lay.chunks,
      chunkElements: lay.chunkElements,
      ...(planned ? { slot: slotOf.get(b.id)! } : {}),
    };
  });
  const layouts = new Map<number, BufferLayout>(buffers.map((b) => [b.id, b]));
  const fields = new Map([...vars].map(([s, v]) => [s, v]));
  const kernels = p.kernels.map((k) => {
    const doc = kernelDoc(p, k, k.name, o);
    const s = new WgslScope(p, k, fields, layouts, reach, limits);
    return kernelOf(s, k, doc);
  });
  const kv = p.kvCache;
  return {
    name: p.name,
    dims: [...vars.keys()].map((symbol) => {
      const c = capacity.get(symbol);
      const isPast = kv.enabled && kv.past === symbol;
      return {
        symbol,
        capacity: isPast ? (kv.capacity ?? 0) : (c ?? null),
      };
    }),
    buffers,
    slots,
    kernels,
    inputs: p.inputs,
    outputs: p.outputs,
    bounds: p.bounds,
    seqDim: p.seqDim ?? null,
    kvCache: kv.enabled
      ? { enabled: true, past: kv.past, capacity: kv.capacity ?? Number.MAX_SAFE_INTEGER }
      : { enabled: false, reason: kv.reason },
    limits,
  };
}

function kernelOf(s: WgslScope, k: Kernel, doc: string[]): WgslKernel {
  const b = k.body;
  switch (b.kind) {
    case "expr":
      return map.mapExpr(s, b, doc);
    case "copy":
      return map.copy(s, doc);
    case "masked_fill":
      return map.maskedFill(s, b, doc);
    case "causal_mask":
      return map.causalMask(s, doc);
    case "range":
      return map.range(s, b, doc);
    case "sinusoidal":
      return map.sinusoidal(s, b, doc);
    case "concat":
      return map.concat(s, b, doc);
    case "gather":
      return map.gather(s, doc);
    case "softmax":
      return softmax(s, b, doc);
    case "layer_norm":
      return layerNorm(s, b, doc);
    case "reduce":
      return reduce(s, b, doc);
    case "matmul":
      return matmul(s, b, doc);
    case "attention":
      return attention(s, b, doc);
    case "attention_cached":
      return attentionCached(s, b, doc);
    default:
      return assertNever(b, "kernel body");
  }
}
