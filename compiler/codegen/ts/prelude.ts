/** The fixed part of every generated module: its public types, the error it throws, and the
 *  small functions the session uses to take weights and inputs. Plain TypeScript that needs
 *  nothing but what a browser or Node has. The public types are module-types.ts's, copied. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** module-types.ts's declarations: the file after its header comment. */
const MODULE_TYPES = (() => {
  const text = readFileSync(join(import.meta.dirname, "module-types.ts"), "utf8");
  const end = text.indexOf("*/\n");
  if (!text.startsWith("/**") || end < 0)
    throw new Error("module-types.ts must open with its header comment");
  return text.slice(end + 3).trim();
})();

export const PRELUDE = `
/** A failure the caller can act on: its kind, where (an input, a tensor) and why. */
export class RuntimeError extends Error {
  readonly kind: "input" | "checkpoint";
  readonly where: string;
  readonly detail: string;
  constructor(kind: "input" | "checkpoint", where: string, detail: string) {
    super(where + ": " + detail);
    this.name = "RuntimeError";
    this.kind = kind;
    this.where = where;
    this.detail = detail;
  }
}

${MODULE_TYPES}

function checkWeight(
  get: WeightSource,
  name: string,
  shape: readonly number[],
): ArrayLike<number> {
  const w = get(name);
  const where = "tensor " + JSON.stringify(name);
  if (w === undefined) throw new RuntimeError("checkpoint", where, "missing");
  const n = shape.reduce((a, b) => a * b, 1);
  if (w.length !== n)
    throw new RuntimeError(
      "checkpoint",
      where,
      w.length + " values but the model needs [" + shape.join(",") + "] (" + n + ")",
    );
  return w;
}

function weight(
  get: WeightSource,
  name: string,
  shape: readonly number[],
  memory?: Memory,
): Float32Array {
  const w = checkWeight(get, name, shape);
  if (memory) {
    const shared = new Float32Array(memory(w.length * 4));
    shared.set(w);
    return shared;
  }
  return w instanceof Float32Array ? w : Float32Array.from(w);
}

function weightI32(get: WeightSource, name: string, shape: readonly number[]): Int32Array {
  const w = checkWeight(get, name, shape);
  return w instanceof Int32Array ? w : Int32Array.from(w);
}

function feedF32(x: Tensor, n: number, where: string): Float32Array {
  if (x.data.length !== n)
    throw new RuntimeError("input", where, x.data.length + " values for " + n + " elements");
  return Float32Array.from(x.data);
}

function feedI32(x: Tensor, n: number, where: string): Int32Array {
  if (x.data.length !== n)
    throw new RuntimeError("input", where, x.data.length + " values for " + n + " elements");
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = x.data[i];
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647)
      throw new RuntimeError("input", where, "value " + v + " at " + i + " is not an i32");
    a[i] = v;
  }
  return a;
}

function sameTensor(a: Tensor, b: Tensor): boolean {
  if (a.shape.length !== b.shape.length || a.data.length !== b.data.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  for (let i = 0; i < a.data.length; i++) if (!Object.is(a.data[i], b.data[i])) return false;
  return true;
}

function copyTensor(x: Tensor): Tensor {
  return { shape: [...x.shape], data: Float64Array.from(x.data) };
}
`;
