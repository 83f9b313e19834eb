/** The checkpoint's weights as the ts runner lends them to the generated modules' `load` (one
 *  module for forward, one for decoding; each loads once, on first use).
 *
 *  Memory rule: a module packs the weights of its matmuls into arrays of its own and keeps the
 *  originals only of the params its sessions read (compiler/codegen/ts/session.ts). The lender
 *  holds no other reference: the first load is handed the checkpoint's arrays, each dropped here
 *  as it is handed over, so an original that is only packed is garbage once packed. When the
 *  caller has let go of the Checkpoint too (`kiln forward`), peak memory is the packed weights and
 *  the kept originals, not both copies of every weight. After that load the lender keeps the
 *  originals the module kept (they are alive anyway); a later module gets those, and reads any
 *  other again from the file (weightRereader, which refuses a file that changed). A checkpoint
 *  that was not read from a file cannot be read again: the lender keeps all its arrays. */
import { weightRereader, type Checkpoint } from "../checkpoint.ts";
import type { WeightSource } from "./module.ts";

/** Runs one module's load on the weights and returns what it returned. */
export type Lend = (load: (weights: WeightSource) => object) => object;

/** Holds no reference to `ckpt`, only to its arrays (as described above). No closure made here
 *  may mention `ckpt` or `arrays`: V8 keeps one context per scope for all its closures. */
export function weightLender(ckpt: Checkpoint): Lend {
  const reread = weightRereader(ckpt);
  const arrays = new Map(Array.from(ckpt.weights, ([name, w]) => [name, w.data]));
  if (reread === undefined) return keepAll(arrays);

  // The name of each array, without keeping it alive: to know the originals a load kept.
  const nameOf = new WeakMap<object, string>();
  for (const [name, data] of arrays) nameOf.set(data, name);
  let first: Map<string, Float32Array> | undefined = arrays;
  const kept = new Map<string, Float32Array>();
  return (load) => {
    const held = first;
    first = undefined;
    if (held === undefined) return load((name) => kept.get(name) ?? reread(name).data);
    try {
      const result = load((name) => {
        const data = held.get(name);
        held.delete(name);
        return data;
      });
      for (const v of Object.values(result)) {
        const name = v instanceof Float32Array ? nameOf.get(v) : undefined;
        if (name !== undefined) kept.set(name, v);
      }
      return result;
    } finally {
      held.clear(); // a load that failed part way: later loads read from the file
    }
  };
}

function keepAll(arrays: ReadonlyMap<string, Float32Array>): Lend {
  return (load) => load((name) => arrays.get(name));
}
