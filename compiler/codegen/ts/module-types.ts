/** The types of a generated module's interface, as the module declares them: the prelude
 *  (prelude.ts) copies the declarations below, comments and all, into every module, and the CPU
 *  runtime imports them from here (runtime/cpu/module.ts), so the two cannot differ. Plain
 *  TypeScript that needs nothing but what a browser or Node has. */
/** An input: its shape and its values, row-major. */
export interface Tensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** An output: its shape and its values, row-major. */
export interface Output {
  readonly shape: number[];
  readonly data: Float32Array | Int32Array;
}

/** The values of a param, by its checkpoint name (model.params lists them). */
export type WeightSource = (name: string) => ArrayLike<number> | undefined;

/** Makes the storage of an array that other threads can see too (a SharedArrayBuffer). */
export type Memory = (bytes: number) => ArrayBufferLike;

/** Threads a session may share its big matmuls with, given by a runtime that has them (kiln's CPU
 *  runtime in Node); without, every kernel runs on the calling thread. */
export interface Threads {
  /** Storage every thread sees: the session's arena and outputs, and load's packed weights. */
  readonly buffer: Memory;
  /** Runs kernel(...args, colFrom, colTo) over column ranges that together cover [0, n) once,
   *  each starting at a multiple of cols, here and on other threads (which call their own copy
   *  of the export called name); returns when all are done. macs: the multiply-adds of the
   *  whole call, to decide whether sharing pays. */
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
  /** Decoding: only the step inputs (model.inputs with phase "step") for the new positions. */
  step(inputs: readonly Tensor[]): Output[];
}
