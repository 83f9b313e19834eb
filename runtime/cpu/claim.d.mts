/** Claims chunks of job `gen` until none is left; runs each (claim.mjs). */
export function runChunks(
  claim: BigInt64Array,
  state: Int32Array,
  gen: number,
  total: number,
  run: (chunk: number) => void,
): void;
