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

/** Makes the storage of an array other threads see too (a SharedArrayBuffer). */
export type Memory = (bytes: number) => ArrayBufferLike;

/** What a session shares its big matmuls with (threads.ts); see the prelude's Threads. */
export interface Threads {
  readonly buffer: Memory;
  matmul(
    kernel: (...args: never[]) => void,
    name: string,
    args: readonly (Float32Array | number)[],
    n: number,
    cols: number,
    macs: number,
  ): void;
}

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
  load(weights: WeightSource, memory?: Memory): object;
  /** A session over load's result, or over weights it loads itself; with threads, its big
   *  matmuls share their columns with them (load must then have been given threads.buffer). */
  createSession(weights: WeightSource | object, threads?: Threads): Session;
}
