/** The Program: what `lower` makes of an (optimized) graph, and what the backends consume. Plain
 *  readonly data: buffers, views of them, and kernels in dispatch order.
 *
 *  - One kernel per computing node (fused or plain). Its `body` says what to generate, in one of
 *    five families: map, row_reduction, matmul, attention, gather. A plain op is lowered to the
 *    body of the fused op that generalizes it (add → map `add($0, $1)`, layer_norm → the
 *    layer_norm body with expr `$0`, matmul → the matmul body with epilogue `acc`, softmax → the
 *    softmax body with scale 1), so each family has one template per body kind. `inputs` are in
 *    the body's operand order, written next to each kind below.
 *  - Views: a kernel reads every operand through a View — an offset and strides in elements into
 *    one buffer, as polynomials in the dims (sym.ts). reshape, transpose and slice (so the split
 *    and merge of heads, and the q/k/v thirds of a merged projection) are index arithmetic, never
 *    copies, with one exception: a reshape that merges axes whose strides do not chain
 *    (stride[i] ≠ stride[i+1]·size[i+1], e.g. merging heads back after a transpose) has no
 *    strides at all, so it is materialized by a `copy` kernel (family map). A concat whose parts
 *    are adjacent views of one buffer is a view too; any other concat is a `concat` kernel.
 *  - Operands that combine elementwise with the result are pre-broadcast: their view has the
 *    result's shape, with stride 0 on broadcast axes (map inputs, epilogue extras, layer norm
 *    prologue operands, masks, and a matmul's batch axes). Other operands keep their own shape.
 *  - Phases: `load` (depends on no graph input: weight transforms, constants) runs once when a
 *    session starts; `source` (depends only on inputs without the sequence dim T, e.g. the
 *    encoder over `src_tokens` and the cross-attention K/V projections of its output) runs once
 *    per source; `step` (everything else) runs every forward. A node depends on an input through
 *    data or through a dim of its shape that the input binds (a range over T is step work).
 *  - Buffers: inputs, params, `const` (a load result read later), `state` (a source result read
 *    by the step phase, and the KV cache), `output`, and `temp` (everything else: the memory
 *    plan packs the temps of the source and step phases into one arena).
 *  - The KV cache (kv-cache.ts): when every op that mixes positions of T is a causal self-
 *    attention without a key mask, each such attention owns two state buffers [capacity, C]
 *    and is lowered to one `attention_cached` kernel, with no copy kernel before it. P (the
 *    cached length, the symbol `kvCache.past`) positions are in the caches; the kernel reads the
 *    step's new k and v rows where they were computed (for GPT-2, strided thirds of the merged
 *    projection), key j < P from cache row j and key j ≥ P from new row j − P, so it never
 *    reads what it writes. The same kernel appends: the work item for (head h, query row i)
 *    copies columns [h·D, (h+1)·D) of new k and v row i to cache row P + i, so the work items
 *    cover rows [P, P+T) once each and no barrier is needed. The caches are its operands 3 and
 *    4 and its `alsoWrites` (a WGSL backend binds each once, read_write). A range over T starts
 *    at P. Otherwise the program is cache-less and says why. */
import type { DType } from "../ir/dtype.ts";
import type { Expr } from "../ir/expr.ts";
import type { OpNode } from "../ir/graph.ts";
import type { Dim, Shape } from "../ir/shape.ts";
import type { SymInt } from "./sym.ts";

export type KernelFamily = "map" | "row_reduction" | "matmul" | "attention" | "gather";
export type Phase = "load" | "source" | "step";
export const PHASES: readonly Phase[] = ["load", "source", "step"];
export type BufferRole = "input" | "param" | "const" | "output" | "temp" | "state";

export interface Buffer {
  readonly id: number;
  /** The IR value it holds (for the KV cache: the attention node it serves). */
  readonly node: string;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly role: BufferRole;
  /** The phase that writes it; an input's is the phase it is fed in, a param's is load. */
  readonly phase: Phase;
  /** The input's name, or the param's checkpoint tensor name. */
  readonly name?: string;
}

/** Element (i0, i1, …) of a view is buffer[offset + Σ ik·strides[k]]. */
export interface View {
  readonly buffer: number;
  readonly offset: SymInt;
  readonly shape: Shape;
  readonly strides: readonly SymInt[];
}

export type KernelBody =
  // family map ─────────────────────────────────────────────────────────────────────────────
  | { readonly kind: "expr"; readonly expr: Expr } // (xs…) out[i] = expr(x0[i], x1[i], …)
  | { readonly kind: "copy" } // (x) out, row-major ← x's elements in x's row-major order
  | { readonly kind: "masked_fill"; readonly value: number } // (x, mask) mask ≠ 0 ? value : x
  | { readonly kind: "causal_mask" } // (x [..,Tq,Tk]) −∞ where key j > query i + (Tk − Tq)
  | { readonly kind: "range"; readonly start: Dim } // () out[i] = start + i
  | { readonly kind: "sinusoidal"; readonly dim: number } // (pos [T]) → [T, dim]
  | { readonly kind: "concat"; readonly axis: number } // (xs…) joined along axis
  // family row_reduction: one row per index of the other axes ────────────────────────────────
  | {
      readonly kind: "softmax"; // (x, [mask]) softmax(masked(x·scale)) along axis
      readonly axis: number;
      readonly scale: number;
      readonly causal: boolean; // axis is last; key j > query i + (Tk − Tq) is hidden
      readonly masked: boolean; // a mask operand: ≠ 0 hides the element
    }
  | { readonly kind: "layer_norm"; readonly eps: number; readonly expr: Expr } // (γ, β, xs…) last axis
  | { readonly kind: "reduce"; readonly axis: number; readonly mean: boolean } // (x) axis kept as 1
  // family matmul ────────────────────────────────────────────────────────────────────────────
  | { readonly kind: "matmul"; readonly transposeB: boolean; readonly expr: Expr } // (a, b, extras…)
  // family attention: per head and query row, online softmax ─────────────────────────────────
  | {
      readonly kind: "attention"; // (q [Tq,C], k [Tk,C], v [Tk,C], [mask [Tk]])
      readonly heads: number;
      readonly scale: number;
      readonly causal: boolean;
      readonly masked: boolean;
    }
  | {
      /** (q [T,C], k [T,C], v [T,C], k_cache [N,C], v_cache [N,C]): causal self-attention
       *  over P cached positions and the T new ones (program.ts's KV cache rule). Query i sees
       *  keys [0, P+i]; key j < P is cache row j, key j ≥ P is k/v row j − P. The work item for
       *  (head h, query i) also copies columns [h·D, (h+1)·D) of k and v row i to cache row
       *  P + i (D = C / heads). */
      readonly kind: "attention_cached";
      readonly heads: number;
      readonly scale: number;
      /** The cached length P (the program's `kvCache.past` symbol). */
      readonly past: Dim;
    }
  // family gather ────────────────────────────────────────────────────────────────────────────
  | { readonly kind: "gather" }; // (table [V,..], ids [..]) → [..ids, ..]

export type BodyKind = KernelBody["kind"];

export const FAMILY: { readonly [K in BodyKind]: KernelFamily } = {
  expr: "map",
  copy: "map",
  masked_fill: "map",
  causal_mask: "map",
  range: "map",
  sinusoidal: "map",
  concat: "map",
  softmax: "row_reduction",
  layer_norm: "row_reduction",
  reduce: "row_reduction",
  matmul: "matmul",
  attention: "attention",
  attention_cached: "attention",
  gather: "gather",
};

export type Kernel = OpNode & {
  /** `k3_matmul_epilogue`: the dispatch index and the op (or `copy`). */
  readonly name: string;
  readonly family: KernelFamily;
  readonly phase: Phase;
  /** The IR node it computes. */
  readonly node: string;
  /** The original IR nodes it stands for: the node's covers and the views folded into its inputs. */
  readonly covers: readonly string[];
  readonly body: KernelBody;
  readonly inputs: readonly View[];
  /** The buffer it writes, whole. */
  readonly output: number;
  /** State buffers it writes besides its output, in part, read through its inputs too (an
   *  attention_cached: the k and v caches, operands 3 and 4, rows [P, P+T)). Empty for others. */
  readonly alsoWrites: readonly number[];
};

/** Every buffer a kernel writes: its output, then its alsoWrites. */
export function writesOf(k: Kernel): number[] {
  return [k.output, ...k.alsoWrites];
}

/** A cached attention: its IR node (the attention_cached kernel's `node`) and its two state
 *  buffers [capacity, C]. */
export interface KvCacheEntry {
  readonly attention: string;
  readonly k: number;
  readonly v: number;
}

export type KvCache =
  | {
      readonly enabled: true;
      /** The symbol for the number of cached positions, bound at run time. */
      readonly past: string;
      /** Rows of each cache buffer: the bound on T (undefined when nothing is cached). */
      readonly capacity: number | undefined;
      readonly entries: readonly KvCacheEntry[];
    }
  | { readonly enabled: false; readonly reason: string };

export interface DimBoundEntry {
  readonly dim: string;
  readonly max: number;
  readonly why: string;
}

export interface Program {
  readonly name: string;
  readonly buffers: readonly Buffer[];
  /** Dispatch order: every load kernel, then source, then step. */
  readonly kernels: readonly Kernel[];
  /** Input buffers in the graph's signature order. */
  readonly inputs: readonly number[];
  /** Output buffers in the graph's output order. */
  readonly outputs: readonly number[];
  readonly bounds: readonly DimBoundEntry[];
  /** The sequence dim a step extends (T), when an input has it. */
  readonly seqDim: string | undefined;
  readonly kvCache: KvCache;
}

export function kernelsOf(p: Program, phase: Phase): Kernel[] {
  return p.kernels.filter((k) => k.phase === phase);
}

export const STEP_SYMBOL = "T";
