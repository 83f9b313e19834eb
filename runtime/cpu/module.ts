/** The interface of a module that compiler/codegen/ts emits (its prelude and `model` constant),
 *  as the CPU runtime sees it: the types every module declares come from the file its prelude
 *  copies them from (compiler/codegen/ts/module-types.ts); the rest is kept in step with
 *  compiler/codegen/ts/module.ts, and the tests type-check every emitted module against it. */

import type {
  Memory,
  Output,
  Session,
  Tensor,
  Threads,
  WeightSource,
} from "../../compiler/codegen/ts/module-types.ts";

export type { Memory, Output, Session, Tensor, Threads, WeightSource };

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
