/** Errors are values with a kind, a location and a message a user can act on.
 *  Every failure kiln can foresee is a KilnError; the CLI prints `error[kind]: where: message`
 *  and exits non-zero without a stack trace. Anything else is a bug in kiln. */

export type ErrorKind =
  | "dsl" // a model definition is ill-typed (shape, dtype, axis)
  | "ir" // a graph failed verification or IR text failed to parse
  | "safetensors" // a .safetensors file is malformed
  | "checkpoint" // config.json / tensor names / shapes do not match the model
  | "input" // bad user input at run time (token ids, sequence length)
  | "usage" // bad command line
  | "limit" // a kernel does not fit the device limits it is compiled for
  | "device" // no WebGPU device, a shader the device rejects, a lost device
  | "not-built"; // a feature that does not exist yet

export class KilnError extends Error {
  override readonly name = "KilnError";
  constructor(
    readonly kind: ErrorKind,
    /** Where: a file (`models/gpt2.ts:42`, `ckpt/model.safetensors`), a tensor or a node. */
    readonly where: string,
    readonly detail: string,
  ) {
    super(where ? `${where}: ${detail}` : detail);
  }
}

export function fail(kind: ErrorKind, where: string, detail: string): never {
  throw new KilnError(kind, where, detail);
}

export function assertNever(x: never, what = "value"): never {
  throw new Error(`unreachable: unexpected ${what} ${JSON.stringify(x)}`);
}
