/** The interface of a module that compiler/codegen/ts emits (its prelude and `model` constant),
 *  as the CPU runtime sees it. Kept in step with compiler/codegen/ts/prelude.ts; the tests load
 *  emitted modules through this type. */

export interface Tensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

export interface Output {
  readonly shape: number[];
  readonly data: Float32Array | Int32Array;
}

export type WeightSource = (name: string) => ArrayLike<number> | undefined;

export interface Session {
  /** Positions held in the KV cache (0 without one). */
  readonly cachedLength: number;
  /** A full forward (a prefill when there is a KV cache): every input, in model.inputs order. */
  run(inputs: readonly Tensor[]): Output[];
  /** Decoding: only the step inputs, in model.inputs order, for the new positions. */
  step(inputs: readonly Tensor[]): Output[];
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly (number | string)[];
}

export interface ModuleInfo {
  readonly name: string;
  readonly inputs: readonly (TensorInfo & { readonly phase: "source" | "step" })[];
  readonly outputs: readonly TensorInfo[];
  readonly params: readonly TensorInfo[];
  readonly dims: readonly { readonly name: string; readonly max: number }[];
  readonly kvCache: { readonly capacity: number } | null;
  readonly arenaElements: number;
}

/** What the generated module's RuntimeError carries. */
export interface ModuleError extends Error {
  readonly kind: "input" | "checkpoint";
  readonly where: string;
  readonly detail: string;
}

export interface CompiledModule {
  readonly model: ModuleInfo;
  readonly RuntimeError: abstract new (...args: never[]) => ModuleError;
  /** The params checked and taken, the load phase run, the matmul weights packed: shareable by
   *  any number of sessions (opaque here). */
  load(weights: WeightSource): object;
  /** A session over load's result, or over weights it loads itself. */
  createSession(weights: WeightSource | object): Session;
}
