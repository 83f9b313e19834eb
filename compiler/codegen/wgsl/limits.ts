/** Device limits a WGSL program is compiled against, and the checks that name what does not fit.
 *
 *  A profile is the subset of `GPUSupportedLimits` kiln's kernels depend on. `WEBGPU_DEFAULTS`
 *  is what every WebGPU device guarantees; `limitsOf(adapter.limits)` takes a real adapter's. A
 *  kernel that asks more than the profile allows is either split or tiled by its generator (a
 *  buffer over the binding size is bound as several chunks, a dispatch over the per-dimension
 *  workgroup count is folded into two dimensions, workgroup sizes are chosen within the limit),
 *  or compilation fails with a KilnError of kind "limit" naming the kernel, the limit, the amount
 *  asked and the amount available. */
import { fail } from "../../errors.ts";

export interface Limits {
  /** Bytes one storage binding may cover. */
  readonly maxStorageBufferBindingSize: number;
  /** Bytes one GPUBuffer may hold. */
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupSizeX: number;
  /** Bytes of `var<workgroup>` storage per kernel. */
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxStorageBuffersPerShaderStage: number;
}

export const LIMIT_NAMES: readonly (keyof Limits)[] = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
];

/** The limits every WebGPU implementation supports (the spec's defaults). */
export const WEBGPU_DEFAULTS: Limits = {
  maxStorageBufferBindingSize: 134217728, // 128 MiB
  maxBufferSize: 268435456, // 256 MiB
  maxComputeWorkgroupsPerDimension: 65535,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxStorageBuffersPerShaderStage: 8,
};

/** A profile from an adapter's or device's limits (fields kiln does not use are ignored). */
export function limitsOf(l: { readonly [K in keyof Limits]: number }): Limits {
  const out = {} as { -readonly [K in keyof Limits]: number };
  for (const k of LIMIT_NAMES) out[k] = l[k];
  return out;
}

/** A profile with some fields overridden, e.g. `--limit maxStorageBufferBindingSize=4096`. */
export function withLimits(base: Limits, changes: Partial<Limits>): Limits {
  return { ...base, ...changes };
}

/** Fails unless `asked ≤ available`: `error[limit]: k3_matmul: maxStorageBuffersPerShaderStage:
 *  the kernel binds 9 storage buffers, the profile allows 8`. */
export function checkLimit(
  kernel: string,
  limit: keyof Limits | "u32 index",
  asked: number,
  available: number,
  what: string,
): void {
  if (asked <= available) return;
  fail("limit", kernel, `${limit}: ${what} ${asked}, the profile allows ${available}`);
}
