/** The memory plan: where each temp lives in one arena, for one binding of the symbolic dims.
 *
 *  Lifetimes are intervals of dispatch indices: from the kernel that writes a temp to the last
 *  kernel that reads it (through any view), both ends included, so a kernel's output never
 *  shares bytes with its own inputs. Only the temps of the source and step phases are planned:
 *  load runs once before any dim is bound, and inputs, params, consts, state (kept source
 *  results, and the KV cache that a cached attention writes besides its output, its
 *  `alsoWrites`) and outputs live outside the arena. Placement is greedy by size (largest
 *  first, ties by first use then id): each temp takes the smallest gap between the
 *  already-placed temps whose lifetimes overlap its own, or goes above them all. Offsets are
 *  aligned (256 bytes by default: WebGPU's minStorageBufferOffsetAlignment).
 *
 *  A plan made for the largest binding also holds for smaller ones (sizes only shrink), which is
 *  how one arena serves a prefill and every later single-token step. */
import { byteSize, type DType } from "../ir/dtype.ts";
import { evalDim, numel, type Bindings } from "../ir/shape.ts";
import { writesOf, type Buffer, type Program } from "./program.ts";

export interface Lifetime {
  /** Dispatch index of the kernel that writes it. */
  readonly first: number;
  /** Dispatch index of the last kernel that reads it (first, when none does). */
  readonly last: number;
}

export interface MemoryPlan {
  /** Byte offset of each planned temp in the arena. */
  readonly offsets: ReadonlyMap<number, number>;
  readonly sizes: ReadonlyMap<number, number>;
  readonly lifetimes: ReadonlyMap<number, Lifetime>;
  readonly arenaBytes: number;
  /** The planned activation peak: the arena, and nothing else. */
  readonly peakBytes: number;
  /** Every temp in its own allocation. */
  readonly unplannedBytes: number;
  /** The most bytes of temps live at one time: no plan can do better than this. */
  readonly liveBytes: number;
}

export interface PlanOptions {
  readonly align?: number;
  /** Bytes per element; the Program interpreter plans in elements (one slot each). */
  readonly bytes?: (d: DType) => number;
}

/** Temps the arena holds: written in the source or step phase. */
export function isPlanned(b: Buffer): boolean {
  return b.role === "temp" && b.phase !== "load";
}

export function lifetimes(p: Program): Map<number, Lifetime> {
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  p.kernels.forEach((k, i) => {
    for (const id of writesOf(k)) if (isPlanned(p.buffers[id]) && !first.has(id)) first.set(id, i);
    for (const v of k.inputs) if (first.has(v.buffer)) last.set(v.buffer, i);
  });
  return new Map(
    [...first].map(([id, f]) => [id, { first: f, last: Math.max(f, last.get(id) ?? f) }]),
  );
}

export function bufferElements(b: Buffer, bindings: Bindings): number {
  return numel(
    b.shape.map((d) => {
      const v = evalDim(d, bindings);
      if (v === undefined) throw new Error(`b${b.id} (%${b.node}): dim ${d} is not bound`);
      return v;
    }),
  );
}

const overlap = (a: Lifetime, b: Lifetime) => a.first <= b.last && b.first <= a.last;

export function planMemory(p: Program, bindings: Bindings, o: PlanOptions = {}): MemoryPlan {
  const align = o.align ?? 256;
  const bytes = o.bytes ?? byteSize;
  const life = lifetimes(p);
  const sizes = new Map<number, number>();
  for (const id of life.keys()) {
    const b = p.buffers[id];
    sizes.set(id, bufferElements(b, bindings) * bytes(b.dtype));
  }
  const padded = (id: number) => Math.ceil(sizes.get(id)! / align) * align;
  const ids = [...life.keys()].sort(
    (a, b) => padded(b) - padded(a) || life.get(a)!.first - life.get(b)!.first || a - b,
  );
  const offsets = new Map<number, number>();
  const placed: number[] = [];
  let arenaBytes = 0;
  for (const id of ids) {
    const size = padded(id);
    const busy = placed
      .filter((q) => overlap(life.get(q)!, life.get(id)!))
      .map((q) => [offsets.get(q)!, offsets.get(q)! + padded(q)] as const)
      .sort((a, b) => a[0] - b[0]);
    let best: number | undefined;
    let bestGap = Infinity;
    let at = 0;
    for (const [start, end] of busy) {
      const gap = start - at;
      if (gap >= size && gap < bestGap) [best, bestGap] = [at, gap];
      at = Math.max(at, end);
    }
    const offset = best ?? at;
    offsets.set(id, offset);
    placed.push(id);
    arenaBytes = Math.max(arenaBytes, offset + size);
  }
  let unplannedBytes = 0;
  for (const s of sizes.values()) unplannedBytes += s;
  return {
    offsets,
    sizes,
    lifetimes: life,
    arenaBytes,
    peakBytes: arenaBytes,
    unplannedBytes,
    liveBytes: maxLive(life, sizes),
  };
}

function maxLive(life: ReadonlyMap<number, Lifetime>, sizes: ReadonlyMap<number, number>): number {
  const delta = new Map<number, number>();
  for (const [id, l] of life) {
    delta.set(l.first, (delta.get(l.first) ?? 0) + sizes.get(id)!);
    delta.set(l.last + 1, (delta.get(l.last + 1) ?? 0) - sizes.get(id)!);
  }
  let live = 0;
  let peak = 0;
  for (const t of [...delta.keys()].sort((a, b) => a - b)) {
    live += delta.get(t)!;
    peak = Math.max(peak, live);
  }
  return peak;
}
