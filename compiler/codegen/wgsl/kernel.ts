/** What a WGSL kernel generator makes, and the scope it renders with.
 *
 *  A kernel is one compute shader module with one entry point `main`:
 *
 *    // header comment: the kernel's name, family, phase, IR line(s), what it reads and writes
 *    struct Dims { d0: u32, d1: u32, … }          the program's symbolic dims (the same struct in
 *    @group(0) @binding(0) var<uniform> dims: Dims;   every kernel: one uniform buffer per program)
 *    @group(0) @binding(1…) var<storage, …> buf0: array<f32>; // b12: …   one per buffer it touches
 *    helpers (accessors of chunked buffers, kiln_erf, …), workgroup variables
 *    @compute @workgroup_size(N) fn main(…) { let wg = wid.x + wid.y * nwg.x; … }
 *
 *  Rules every generator follows:
 *  - Buffers are bound whole, once per kernel, named in order of first use (`buf0` is the output;
 *    the declaration's comment names the program's buffer `b12` and its IR value). So the kernels
 *    of identical layers have identical code apart from comments, and the runtime compiles one
 *    pipeline for all of them. An operand is a View of one (its
 *    offset and strides rendered from the program's polynomials, `s.view(v)`). A buffer the kernel
 *    writes (its output, its alsoWrites) is bound read_write, every other read-only.
 *  - Every element access goes through `s.read` / `s.write`: a buffer larger than the profile's
 *    binding size is bound as several chunks (`buf1_0`, `buf1_1`, …, each `chunkElements` long) and
 *    accessed through `ld_buf1(i)` / `st_buf1(i, v)`; a buffer that fits is indexed directly.
 *  - Dispatch: `workgroups = ceil(count / per)` at the run's dims, folded into (x, y) when it
 *    exceeds the per-dimension limit; `wg` is the linear workgroup index and the generator guards
 *    `wg` (and each invocation's work item) against its own count — never against the dispatch
 *    size, which may be rounded up.
 *  - Index arithmetic is u32. `s.view` checks at compile time that the largest element index a
 *    view can reach at the program's capacity fits in u32 (error kind "limit" otherwise).
 *  - f32 throughout, i32 for integer buffers. WGSL assumes finite math: generators use finite
 *    sentinels (`NEG_BIG`) for masks, never ±∞ or NaN.
 *  - User strings reach the source only through `commentText` (names.ts). */
import type { DType } from "../../ir/dtype.ts";
import { evalDim, type Dim } from "../../ir/shape.ts";
import type { Kernel, Program, View } from "../../lower/program.ts";
import { symOfDim, type SymInt } from "../../lower/sym.ts";
import { renderHelpers, type Helper } from "../helpers.ts";
import { commentText } from "../names.ts";
import { checkLimit, type Limits } from "./limits.ts";

/** How a buffer is stored on the device: in `chunks` GPUBuffers of `chunkElements` elements each
 *  (one chunk when it fits one binding). */
export interface BufferLayout {
  readonly chunks: number;
  readonly chunkElements: number;
}

export type Access = "read" | "read_write";

/** One storage binding: a buffer's chunk. `@binding(i + 1)` for the i-th entry. */
export interface WgslBinding {
  readonly buffer: number;
  readonly chunk: number;
  readonly access: Access;
}

/** ceil(count / per) workgroups, `count` evaluated at the run's dims. */
export interface Workgroups {
  readonly count: SymInt;
  readonly per: number;
}

export interface WgslKernel {
  readonly name: string;
  readonly phase: Kernel["phase"];
  readonly family: Kernel["family"];
  /** The whole shader module, header comment included. */
  readonly source: string;
  readonly bindings: readonly WgslBinding[];
  readonly workgroups: Workgroups;
  readonly workgroupSize: number;
  /** Bytes of workgroup storage it declares. */
  readonly workgroupBytes: number;
}

/** What a generator hands to `finish`. */
export interface KernelParts {
  readonly doc: readonly string[];
  readonly workgroupSize: number;
  readonly workgroups: Workgroups;
  /** The statements of `main` after `let wg = …;`. */
  readonly body: readonly string[];
  /** Module-scope declarations: functions, constants, `var<workgroup>` (declare those with
   *  `s.workgroupArray`, which counts their bytes). */
  readonly decls?: readonly string[];
  readonly helpers?: ReadonlySet<Helper>;
}

/** The largest finite f32 magnitude, as WGSL masks use it in place of ∞. */
export const NEG_BIG = "-3.4028234663852886e38";

const U32_MAX = 2 ** 32 - 1;

/** A u32 literal. */
export const u32 = (n: number): string => `${n}u`;

/** `x` when it is a name, a literal or a member access, else `(x)`. */
export function atom(x: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.]*$|^\d+u?$/.test(x) ? x : `(${x})`;
}

/** `base + i * stride` as u32 source, leaving out what is trivial. */
export function plus(base: string, i: string, stride: string): string {
  if (stride === "0u") return base;
  const term = stride === "1u" ? i : `${atom(i)} * ${atom(stride)}`;
  return base === "0u" || base === "" ? term : `${base} + ${term}`;
}

export class WgslScope {
  private readonly used = new Map<number, Access>();
  private workgroupBytes = 0;
  readonly limits: Limits;

  constructor(
    readonly program: Program,
    readonly kernel: Kernel,
    /** dim symbol → field of `Dims` (`d0`, …), in the program's order. */
    readonly dims: ReadonlyMap<string, string>,
    readonly layouts: ReadonlyMap<number, BufferLayout>,
    /** The binding every dim is at its largest (bounds, maxDims, P at its capacity). */
    readonly capacity: ReadonlyMap<string, number>,
    limits: Limits,
  ) {
    this.limits = limits;
    for (const w of [kernel.output, ...kernel.alsoWrites]) this.used.set(w, "read_write");
  }

  /** A polynomial as u32 source over the dims: `24u + 72u * dims.d0`. */
  sym(a: SymInt): string {
    if (a.length === 0) return "0u";
    const terms = a.map((t) => {
      const vars = t.syms.map((s) => {
        const v = this.dims.get(s);
        if (v === undefined) throw new Error(`dim symbol ${s} has no field in Dims`);
        return `dims.${v}`;
      });
      const c = Math.abs(t.coef);
      const body =
        vars.length === 0 ? u32(c) : c === 1 ? vars.join(" * ") : [u32(c), ...vars].join(" * ");
      return { neg: t.coef < 0, body };
    });
    // Positive terms first, so the u32 sum never goes below zero on the way.
    terms.sort((x, y) => Number(x.neg) - Number(y.neg));
    return terms.reduce(
      (acc, t, i) =>
        i === 0 ? (t.neg ? `0u - ${t.body}` : t.body) : `${acc} ${t.neg ? "-" : "+"} ${t.body}`,
      "",
    );
  }

  dim(d: Dim): string {
    return this.sym(symOfDim(d));
  }

  /** A dim's value at the program's capacity (its largest run-time value). */
  atCapacity(a: SymInt): number {
    let total = 0;
    for (const t of a) {
      let v = t.coef;
      for (const s of t.syms) {
        const n = this.capacity.get(s);
        if (n === undefined) throw new Error(`dim symbol ${s} has no capacity`);
        v *= n;
      }
      total += v;
    }
    return total;
  }

  dimAtCapacity(d: Dim): number {
    const n = evalDim(d, this.capacity);
    if (n === undefined) throw new Error(`dim ${d} has no capacity`);
    return n;
  }

  dtype(buffer: number): DType {
    return this.program.buffers[buffer].dtype;
  }

  /** The WGSL element type of a buffer. */
  elem(buffer: number): "f32" | "i32" {
    return this.dtype(buffer) === "i32" ? "i32" : "f32";
  }

  /** Uses a buffer (read-only unless the kernel writes it); returns its name in this kernel,
   *  `buf0`, `buf1`, … in order of first use (the output first). */
  buffer(id: number): string {
    if (!this.used.has(id)) this.used.set(id, "read");
    return `buf${[...this.used.keys()].indexOf(id)}`;
  }

  private chunked(id: number): boolean {
    return (this.layouts.get(id)?.chunks ?? 1) > 1;
  }

  /** An element read: `b12[i]`, or `ld_b12(i)` for a chunked buffer. */
  read(id: number, index: string): string {
    const name = this.buffer(id);
    return this.chunked(id) ? `ld_${name}(${index})` : `${name}[${index}]`;
  }

  /** An element write statement: `b12[i] = v;`, or `st_b12(i, v);`. */
  write(id: number, index: string, value: string): string {
    const name = this.buffer(id);
    return this.chunked(id) ? `st_${name}(${index}, ${value});` : `${name}[${index}] = ${value};`;
  }

  /** A view's offset and strides as u32 source, after checking that every element index it can
   *  reach at capacity fits in u32. */
  view(v: View): { at: string; strides: string[] } {
    this.buffer(v.buffer);
    let max = this.atCapacity(v.offset);
    v.shape.forEach((d, k) => {
      const n = this.dimAtCapacity(d);
      if (n > 0) max += (n - 1) * this.atCapacity(v.strides[k]);
    });
    checkLimit(
      this.kernel.name,
      "u32 index",
      max,
      U32_MAX,
      `an operand's largest element index is`,
    );
    return { at: this.sym(v.offset), strides: v.strides.map((x) => this.sym(x)) };
  }

  /** Declares `var<workgroup> name: array<type, n>;` and counts its bytes. */
  workgroupArray(name: string, type: "f32" | "i32" | "u32", n: number): string {
    this.workgroupBytes += 4 * n;
    return `var<workgroup> ${name}: array<${type}, ${n}>;`;
  }

  /** The largest workgroup size the profile allows, up to `want`. */
  workgroupSize(want = 256): number {
    return Math.max(
      1,
      Math.min(
        want,
        this.limits.maxComputeInvocationsPerWorkgroup,
        this.limits.maxComputeWorkgroupSizeX,
      ),
    );
  }

  finish(parts: KernelParts): WgslKernel {
    const name = this.kernel.name;
    const { limits } = this;
    checkLimit(
      name,
      "maxComputeInvocationsPerWorkgroup",
      parts.workgroupSize,
      Math.min(limits.maxComputeInvocationsPerWorkgroup, limits.maxComputeWorkgroupSizeX),
      "the workgroup size is",
    );
    checkLimit(
      name,
      "maxComputeWorkgroupStorageSize",
      this.workgroupBytes,
      limits.maxComputeWorkgroupStorageSize,
      "bytes of workgroup storage asked:",
    );
    const groups = Math.ceil(this.atCapacity(parts.workgroups.count) / parts.workgroups.per);
    const perDim = limits.maxComputeWorkgroupsPerDimension;
    checkLimit(
      name,
      "maxComputeWorkgroupsPerDimension",
      groups,
      perDim * perDim,
      "workgroups at capacity (folded into two dimensions):",
    );
    const bindings: WgslBinding[] = [];
    const vars: string[] = [];
    const accessors: string[] = [];
    for (const [id, access] of this.used) {
      const b = this.program.buffers[id];
      const type = this.elem(id);
      const layout = this.layouts.get(id) ?? { chunks: 1, chunkElements: 0 };
      const what = `b${id}: ${b.role} ${b.dtype}[${b.shape.join(",")}] %${b.node}`;
      const mode = access === "read" ? "read" : "read_write";
      for (let c = 0; c < layout.chunks; c++) {
        bindings.push({ buffer: id, chunk: c, access });
        const v = layout.chunks > 1 ? `${this.buffer(id)}_${c}` : this.buffer(id);
        vars.push(
          `@group(0) @binding(${bindings.length}) var<storage, ${mode}> ${v}: array<${type}>; // ${commentText(what)}${layout.chunks > 1 ? ` (chunk ${c} of ${layout.chunks})` : ""}`,
        );
      }
      if (layout.chunks > 1)
        accessors.push(...chunkAccessors(this.buffer(id), type, layout, access));
    }
    checkLimit(
      name,
      "maxStorageBuffersPerShaderStage",
      bindings.length,
      limits.maxStorageBuffersPerShaderStage,
      "storage buffers bound:",
    );
    const dimFields = [...this.dims.values()];
    const source = [
      ...parts.doc.map((l) => `// ${l}`),
      "",
      `struct Dims {`,
      ...(dimFields.length ? dimFields.map((d) => `  ${d}: u32,`) : ["  unused: u32,"]),
      `}`,
      `@group(0) @binding(0) var<uniform> dims: Dims;`,
      ...vars,
      "",
      ...(accessors.length ? [...accessors, ""] : []),
      ...(parts.helpers?.size ? [renderHelpers(parts.helpers, "wgsl"), ""] : []),
      ...(parts.decls?.length ? [...parts.decls, ""] : []),
      `@compute @workgroup_size(${parts.workgroupSize})`,
      `fn main(`,
      `  @builtin(workgroup_id) wid: vec3<u32>,`,
      `  @builtin(num_workgroups) nwg: vec3<u32>,`,
      `  @builtin(local_invocation_index) lid: u32,`,
      `) {`,
      `  let wg = wid.x + wid.y * nwg.x;`,
      ...parts.body.map((l) => (l === "" ? l : `  ${l}`)),
      `}`,
      "",
    ].join("\n");
    return {
      name,
      phase: this.kernel.phase,
      family: this.kernel.family,
      source,
      bindings,
      workgroups: parts.workgroups,
      workgroupSize: parts.workgroupSize,
      workgroupBytes: this.workgroupBytes,
    };
  }
}

/** `ld_b12(i)` (and `st_b12(i, v)` when written) over a chunked buffer's bindings. */
function chunkAccessors(
  name: string,
  type: string,
  layout: BufferLayout,
  access: Access,
): string[] {
  const n = layout.chunkElements;
  const branches = (f: (c: string) => string) =>
    Array.from({ length: layout.chunks }, (_, c) =>
      c === layout.chunks - 1
        ? `  ${f(`${name}_${c}`)}`
        : `  if (c == ${u32(c)}) { ${f(`${name}_${c}`)} }`,
    );
  const out = [
    `fn ld_${name}(i: u32) -> ${type} {`,
    `  let c = i / ${u32(n)};`,
    `  let j = i - c * ${u32(n)};`,
    ...branches((v) => `return ${v}[j];`),
    `}`,
  ];
  if (access === "read_write")
    out.push(
      `fn st_${name}(i: u32, v: ${type}) {`,
      `  let c = i / ${u32(n)};`,
      `  let j = i - c * ${u32(n)};`,
      ...branches((b) => `${b}[j] = v; return;`),
      `}`,
    );
  return out;
}
