/** The loader of a WGSL artifact: this file's declarations are copied into every wgsl `model.js`
 *  (inline-source.ts) next to the TypeScript artifact's loader (codegen/ts/artifact/runtime.ts),
 *  whose reading and checks it reuses — the same sources (folder, .safetensors path, bytes), the
 *  same strict safetensors reader, the same checkpoint layout, config.json and input checks, the
 *  same sampler — so the two artifacts accept and refuse exactly the same things. What differs is
 *  that the kernels run on a GPUDevice the caller passes, through the WebGPU driver
 *  (runtime/webgpu/session.ts, copied whole into model.js), so everything is asynchronous:
 *
 *  - `load(device, source)` checks the device (a GPUDevice whose limits cover the profile the
 *    kernels were compiled against), reads and checks the weights, then compiles the kernels,
 *    uploads the params and runs the load phase (`GpuTarget.load`), and makes one session.
 *  - `forward` and `generate` return promises; the model runs one call at a time (a call waits
 *    for the previous ones), so a forward started during a generate cannot reset its KV cache.
 *  - `generate` is runtime/generate.ts's loop as in the ts artifact: greedy at temperature 0,
 *    else softmax(logits / t) over the top k drawn with mulberry32(seed); with a KV cache the
 *    prompt runs once and each new token is one cached step (the cache stays on the GPU), both
 *    through the decoding program when the artifact has one (`GpuTarget.loadDecoding`: the
 *    last-position pass, so only the last position's logits, [1, vocab]), which is compiled and
 *    given its params on the first generate (the weights stay in memory until then), and at
 *    temperature 0 each call reads back only the chosen token (the driver's "argmax" read).
 *    `forward` always runs the full program (every position's logits).
 *  - The driver's errors (kind "input" or "device", duck-typed) come out as KilnErrors;
 *    `destroy()` frees the model's GPU buffers (not the device) and later calls fail. */
import { fail, KilnError } from "../../../errors.ts";
import { sample, seededRandom } from "../../../../runtime/generate.ts";
import { parseSafetensors } from "../../../../runtime/safetensors.ts";
import { generateRequest, packModelInputs } from "../../ts/artifact/inputs.ts";
import {
  checkConfig,
  finalRow,
  matchParams,
  readSource,
  resultOf,
  type ArtifactSpec,
  type ForwardResult,
  type GenerateSettings,
  type KernelOutput,
  type KernelTensor,
  type ModelSource,
} from "../../ts/artifact/runtime.ts";

// ── what the driver provides (runtime/webgpu/session.ts, wired up in model.js) ───────────────

/** What a call reads back: every output, or only the index of the largest value in the last
 *  row of the first output, as `[{ shape: [1], data: [index] }]` (the driver's `Read`). */
export type GpuRead = "outputs" | "argmax";

/** A WebGPU session: `run` resets the KV cache, `step` decodes against it. */
export interface GpuKernelSession {
  run(inputs: readonly KernelTensor[], read?: GpuRead): Promise<KernelOutput[]>;
  step(inputs: readonly KernelTensor[], read?: GpuRead): Promise<KernelOutput[]>;
  destroy(): void;
}

/** The kernels compiled on the device, params uploaded, the load phase run. */
export interface GpuKernelModel {
  createSession(): GpuKernelSession;
  destroy(): void;
}

/** The device, the limits the kernels were compiled against, and how to load them on it. */
export interface GpuTarget {
  readonly device: unknown;
  readonly limits: Readonly<Record<string, number>>;
  load(weights: (name: string) => Float32Array | undefined): Promise<GpuKernelModel>;
  /** The decoding program (last position only), when the full program has a KV cache: what
   *  `generate` runs, loaded on its first call. */
  readonly loadDecoding?: (
    weights: (name: string) => Float32Array | undefined,
  ) => Promise<GpuKernelModel>;
}

// ── the public API ─────────────────────────────────────────────────────────────────────────

export interface GpuModel<I> {
  /** One forward pass over the whole sequence, on the GPU. */
  forward(inputs: I): Promise<ForwardResult>;
  /** Continues `tokens`; resolves to only the new token ids. */
  generate(request: I & GenerateSettings): Promise<number[]>;
  /** Frees the model's GPU buffers (the device stays the caller's); later calls fail. */
  destroy(): void;
}

// ── the device ─────────────────────────────────────────────────────────────────────────────

/** Fails unless `device` looks like a GPUDevice whose limits reach every limit in `limits`. */
export function checkDevice(device: unknown, limits: Readonly<Record<string, number>>): void {
  const usage =
    "expected a GPUDevice as the first argument: load(device, source), with the device from navigator.gpu (a browser) or the webgpu package (Node)";
  if (typeof device !== "object" || device === null) fail("usage", "load", usage);
  const d = device as { createBuffer?: unknown; limits?: unknown; queue?: unknown };
  if (typeof d.createBuffer !== "function" || typeof d.limits !== "object" || d.limits === null)
    fail("usage", "load", usage);
  const has = d.limits as Readonly<Record<string, unknown>>;
  for (const [name, need] of Object.entries(limits)) {
    const got = has[name];
    if (typeof got === "number" && got < need)
      fail(
        "device",
        "load",
        `the device's ${name} is ${got}; the kernels were compiled for ${need} (request a device with higher limits, or compile against this device's)`,
      );
  }
}

/** Runs driver work; its errors (kind, where, detail: "input" or "device") become KilnErrors. */
async function onGpu<T>(f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (
      e instanceof Error &&
      !(e instanceof KilnError) &&
      "kind" in e &&
      "where" in e &&
      "detail" in e &&
      (e.kind === "input" || e.kind === "device")
    )
      throw new KilnError(e.kind, String(e.where), String(e.detail));
    throw e;
  }
}

// ── the model ──────────────────────────────────────────────────────────────────────────────

function makeGpuModel<I>(
  spec: ArtifactSpec,
  kernels: GpuKernelModel,
  session: GpuKernelSession,
  loadDecoding: (() => Promise<GpuKernelModel>) | undefined,
): GpuModel<I> {
  let destroyed = false;
  /** The decoding program's model and one session on it, made by the first generate. */
  let decoding: Promise<{ model: GpuKernelModel; session: GpuKernelSession }> | undefined;
  const decoder = (load: () => Promise<GpuKernelModel>) => {
    if (!decoding) {
      const made = onGpu(async () => {
        const model = await load();
        try {
          return { model, session: model.createSession() };
        } catch (e) {
          model.destroy();
          throw e;
        }
      });
      decoding = made;
      made.catch(() => {
        if (decoding === made) decoding = undefined; // the next generate tries again
      });
    }
    return decoding;
  };
  let tail: Promise<unknown> = Promise.resolve();
  /** One call at a time: `f` starts when every earlier call has settled. */
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const run = tail.then(() => {
      if (destroyed) fail("usage", spec.name, "the model was destroyed");
      return f();
    });
    tail = run.catch(() => undefined);
    return run;
  };
  const forwardNow = async (inputs: I): Promise<ForwardResult> => {
    const packed = packModelInputs(spec, inputs as Readonly<Record<string, unknown>>);
    return resultOf(await onGpu(() => session.run(packed)));
  };
  return {
    forward: (inputs) => serial(() => forwardNow(inputs)),
    generate: (request) =>
      serial(async () => {
        const { maxNewTokens, temperature, topK, seed, fields, packed, step, prompt } =
          generateRequest(spec, request);
        const rand = seededRandom(seed ?? 0);
        const out: number[] = [];
        if (maxNewTokens === 0) return out;
        const tokens = [...prompt];
        const stepOf = (next: number) => [{ shape: [1], data: Int32Array.of(next) }];
        if (spec.kvCache && loadDecoding) {
          // The decoding program: the prompt once, then one cached step per token; greedy reads
          // back only the chosen token.
          const d = (await decoder(loadDecoding)).session;
          const t = temperature ?? 0;
          const pick = async (call: (read: GpuRead) => Promise<KernelOutput[]>) => {
            if (t === 0) return (await onGpu(() => call("argmax")))[0].data[0];
            return sample(finalRow(resultOf(await onGpu(() => call("outputs")))), t, topK, rand);
          };
          let next = await pick((read) => d.run(packed, read));
          for (let i = 0; ; i++) {
            out.push(next);
            if (i + 1 === maxNewTokens) break;
            const last = next;
            next = await pick((read) => d.step(stepOf(last), read));
          }
          return out;
        }
        let logits = resultOf(await onGpu(() => session.run(packed)));
        for (let i = 0; i < maxNewTokens; i++) {
          const next = sample(finalRow(logits), temperature ?? 0, topK, rand);
          tokens.push(next);
          out.push(next);
          if (i + 1 === maxNewTokens) break;
          logits = spec.kvCache
            ? resultOf(await onGpu(() => session.step(stepOf(next))))
            : await forwardNow({ ...fields, [step.key]: tokens } as I);
        }
        return out;
      }),
    destroy() {
      if (destroyed) return;
      destroyed = true;
      session.destroy();
      kernels.destroy();
      // A decoding program still loading is freed when it arrives.
      void decoding?.then(
        (d) => {
          d.session.destroy();
          d.model.destroy();
        },
        () => undefined,
      );
    },
  };
}

/** What `load` in model.js calls with its SPEC and the driver wired to the caller's device. */
export async function loadGpuModel<I>(
  spec: ArtifactSpec,
  gpu: GpuTarget,
  source: ModelSource,
): Promise<GpuModel<I>> {
  checkDevice(gpu.device, gpu.limits);
  const src = await readSource(source);
  if (src.config) checkConfig(spec, src.config.file, src.config.text);
  const st = parseSafetensors(src.bytes, src.file);
  const weights = matchParams(spec, st.tensors, src.file);
  const kernels = await onGpu(() => gpu.load((name) => weights.get(name)));
  const session = await onGpu(() => kernels.createSession());
  const loadDecoding = gpu.loadDecoding;
  return makeGpuModel<I>(
    spec,
    kernels,
    session,
    loadDecoding && (() => loadDecoding((name) => weights.get(name))),
  );
}
