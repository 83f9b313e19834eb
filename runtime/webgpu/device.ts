/** Getting a GPUDevice. In a browser: `navigator.gpu`. In Node: the `webgpu` package (Dawn),
 *  trying the backends that work on machines without a GPU, in order (../../README.md says how
 *  to set each up):
 *
 *    vulkan   Dawn's Vulkan backend: a real GPU's driver, or lavapipe from Mesa ≥ 25
 *    opengl   Dawn's OpenGL ES backend on llvmpipe (compatibility feature level; EGL surfaceless)
 *
 *  `KILN_WEBGPU_BACKEND=vulkan|opengl` tries only that one. When none gives an adapter the error
 *  names every backend tried and why it failed. The device is requested with the adapter's own
 *  limits (the profile kernels are then compiled against, codegen/wgsl/limits.ts).
 *
 *  The object `create()` returns must stay referenced while any device made from it lives: if it
 *  is garbage-collected the process crashes. They are kept in `KEEP` for the process's life. */
import { fail } from "../../compiler/errors.ts";
import { LIMIT_NAMES, limitsOf, type Limits } from "../../compiler/codegen/wgsl/limits.ts";

export const NODE_BACKENDS = ["vulkan", "opengl"] as const;
export type NodeBackend = (typeof NODE_BACKENDS)[number];

export interface Gpu {
  readonly device: GPUDevice;
  /** The limits the device was created with. */
  readonly limits: Limits;
  /** Where it came from: `navigator.gpu`, or `webgpu package, backend=vulkan (llvmpipe…)`. */
  readonly description: string;
  readonly features: ReadonlySet<string>;
}

/** Holds every `GPU` object the webgpu package made (see the header). */
const KEEP: unknown[] = [];

let shared: Promise<Gpu> | undefined;

/** One device for the process, made on first use. */
export function sharedGpu(): Promise<Gpu> {
  shared ??= requestGpu();
  shared.catch(() => (shared = undefined));
  return shared;
}

export async function requestGpu(): Promise<Gpu> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) {
    const adapter = await nav.gpu.requestAdapter();
    if (!adapter) fail("device", "navigator.gpu", "requestAdapter() gave no adapter");
    return open(adapter, "navigator.gpu");
  }
  return nodeGpu();
}

async function nodeGpu(): Promise<Gpu> {
  let webgpu: typeof import("webgpu");
  try {
    webgpu = await import("webgpu");
  } catch (e) {
    return fail(
      "device",
      "--target wgsl",
      `the webgpu package could not be loaded (${(e as Error).message.split("\n")[0]}): run npm install`,
    );
  }
  Object.assign(globalThis, webgpu.globals);
  const only = process.env.KILN_WEBGPU_BACKEND;
  if (only !== undefined && !(NODE_BACKENDS as readonly string[]).includes(only))
    fail(
      "usage",
      "KILN_WEBGPU_BACKEND",
      `must be one of ${NODE_BACKENDS.join(", ")}, got ${JSON.stringify(only)}`,
    );
  const order = only ? [only as NodeBackend] : [...NODE_BACKENDS];
  const tried: string[] = [];
  for (const backend of order) {
    try {
      if (backend === "opengl") process.env.EGL_PLATFORM ??= "surfaceless";
      const gpu = webgpu.create([`backend=${backend}`]);
      KEEP.push(gpu);
      const adapter = await gpu.requestAdapter(
        backend === "opengl" ? { featureLevel: "compatibility" } : {},
      );
      if (!adapter) {
        tried.push(`${backend}: no adapter`);
        continue;
      }
      const info = adapter.info;
      const name = [info.vendor, info.architecture, info.device, info.description]
        .filter((x) => x)
        .join(" ");
      return await open(adapter, `webgpu package, backend=${backend}${name ? ` (${name})` : ""}`);
    } catch (e) {
      tried.push(`${backend}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return fail(
    "device",
    "--target wgsl",
    `no WebGPU adapter (tried ${tried.join("; ")}). On Debian 12: install Mesa 25's lavapipe from bookworm-backports (see README, "WebGPU without a GPU")`,
  );
}

async function open(adapter: GPUAdapter, description: string): Promise<Gpu> {
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMIT_NAMES) requiredLimits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({ requiredLimits });
  return {
    device,
    limits: limitsOf(device.limits),
    description,
    features: new Set([...device.features].map(String)),
  };
}
