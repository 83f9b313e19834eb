/** Compiling a graph or a Program with the WGSL backend and running it on the test device next
 *  to the Program interpreter (the oracle), for the WGSL codegen tests. */
import type { Limits } from "../../../../compiler/codegen/wgsl/limits.ts";
import { emitWgsl, type WgslProgram } from "../../../../compiler/codegen/wgsl/program.ts";
import type { Graph } from "../../../../compiler/ir/graph.ts";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { createSession, type WeightLike } from "../../../../compiler/lower/execute.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import type { Program } from "../../../../compiler/lower/program.ts";
import type { Gpu } from "../../../../runtime/webgpu/device.ts";
import {
  loadModel,
  type Tensor,
  type WebGpuModel,
  type WebGpuSession,
} from "../../../../runtime/webgpu/session.ts";

export type Inputs = ReadonlyMap<string, NDArray>;
export type Params = (name: string) => WeightLike | undefined;

export interface WgslPairOptions {
  readonly maxDims?: ReadonlyMap<string, number>;
  /** The profile to compile against (default: the device's own limits). */
  readonly limits?: Limits;
}

/** The weights as float32/int32 arrays by name. */
function weightSource(program: Program, params: Params) {
  return (name: string): Float32Array | Int32Array | undefined => {
    const w = params(name);
    if (!w) return undefined;
    const data = "shape" in w ? w.data : w;
    const b = program.buffers.find((x) => x.role === "param" && x.name === name);
    return b?.dtype === "i32" ? Int32Array.from(data) : Float32Array.from(data);
  };
}

function tensors(p: Program, inputs: Inputs, phases: readonly string[]): Tensor[] {
  return p.inputs
    .filter((id) => phases.includes(p.buffers[id].phase === "step" ? "step" : "source"))
    .map((id) => {
      const name = p.buffers[id].name ?? p.buffers[id].node;
      const a = inputs.get(name);
      if (!a) throw new Error(`no input ${name}`);
      return { shape: a.shape, data: a.data };
    });
}

/** A WebGPU session and an interpreter session on the same program and weights. */
export interface WgslPair {
  readonly program: Program;
  readonly wgsl: WgslProgram;
  readonly model: WebGpuModel;
  readonly session: WebGpuSession;
  run(inputs: Inputs): Promise<{ got: NDArray[]; want: NDArray[] }>;
  step(inputs: Inputs): Promise<{ got: NDArray[]; want: NDArray[] }>;
}

export async function wgslPair(
  gpu: Gpu,
  g: Graph | Program,
  params: Params,
  o: WgslPairOptions = {},
): Promise<WgslPair> {
  const program = "kernels" in g ? g : lower(g);
  const wgsl = emitWgsl(program, { limits: o.limits ?? gpu.limits, maxDims: o.maxDims });
  const model = await loadModel(gpu.device, wgsl, weightSource(program, params));
  const session = model.createSession();
  const interpreted = createSession(program, params);
  const nd = (x: { shape: number[]; data: Float32Array | Int32Array }) => ndarray(x.shape, x.data);
  return {
    program,
    wgsl,
    model,
    session,
    run: async (inputs) => ({
      got: (await session.run(tensors(program, inputs, ["source", "step"]))).map(nd),
      want: interpreted.run(inputs),
    }),
    step: async (inputs) => ({
      got: (await session.step(tensors(program, inputs, ["step"]))).map(nd),
      want: interpreted.step(inputs),
    }),
  };
}

export { relError } from "../ts/harness.ts";
