/** A stand-in for the generated kernel module, for the loader's tests only (never shipped): the
 *  same exports as codegen/ts's emitModule — `createSession(weights)` with `run` and `step` on
 *  tensors — but made-up logits that are easy to predict:
 *
 *    logits[t][v] = (7·token[t] + 3·v + 5·position[t]) mod vocab  +  Σ first value of each param
 *
 *  so the loader's plumbing (weights by name, inputs in order, KV-cache stepping) is visible in
 *  the numbers. It asks for every param the way the real module does, failing on a missing one. */
export interface StandInOptions {
  readonly vocab: number;
  readonly params: readonly string[];
  /** Index of the per-position input in run's input list. */
  readonly stepInput: number;
}

export function standInKernels(o: StandInOptions): string {
  return `
/** A stand-in kernel module (tests only). */
export interface Tensor {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}
export interface Output {
  readonly shape: number[];
  readonly data: Float32Array;
}
const VOCAB = ${o.vocab};
const PARAMS: readonly string[] = ${JSON.stringify(o.params)};

export function createSession(weights: (name: string) => ArrayLike<number> | undefined) {
  let bias = 0;
  for (const name of PARAMS) {
    const w = weights(name);
    if (w === undefined) throw new Error("stand-in: missing " + name);
    bias += w[0] ?? 0;
  }
  let cached = 0;
  const rows = (tokens: ArrayLike<number>, first: number): Output => {
    const out = new Float32Array(tokens.length * VOCAB);
    for (let t = 0; t < tokens.length; t++)
      for (let v = 0; v < VOCAB; v++)
        out[t * VOCAB + v] = ((7 * tokens[t] + 3 * v + 5 * (first + t)) % VOCAB) + bias;
    return { shape: [tokens.length, VOCAB], data: out };
  };
  return {
    run(inputs: readonly Tensor[]): Output[] {
      const x = inputs[${o.stepInput}].data;
      cached = x.length;
      return [rows(x, 0)];
    },
    step(inputs: readonly Tensor[]): Output[] {
      const x = inputs[0].data;
      const out = rows(x, cached);
      cached += x.length;
      return [out];
    },
  };
}
`;
}

/** The stand-in's greedy continuation, computed directly. */
export function standInGreedy(o: StandInOptions, prompt: readonly number[], n: number): number[] {
  const tokens = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = tokens[tokens.length - 1];
    const pos = tokens.length - 1;
    let best = 0;
    const score = (v: number) => (7 * t + 3 * v + 5 * pos) % o.vocab;
    for (let v = 1; v < o.vocab; v++) if (score(v) > score(best)) best = v;
    tokens.push(best);
    out.push(best);
  }
  return out;
}
