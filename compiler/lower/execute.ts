/** The Program interpreter: runs a Program's kernels in dispatch order on float64 arrays laid out
 *  as the Program says, so lowering is tested before any code generation exists. Temps live in
 *  one arena at the memory plan's offsets (planned in elements); inputs, params, consts, state
 *  and outputs have arrays of their own; every operand is read through its view. Each family is
 *  implemented as generated code will be (kernels-*.ts), never by an op's reference eval.
 *
 *  A session loads params and runs the load phase once. `run` is a prefill: it binds the dims
 *  from the inputs, runs the source phase (skipped when the source inputs are the ones it last
 *  ran on), then the step phase with no cached positions. `step` feeds only the step inputs (the
 *  new tokens), runs the step phase with P = the cached length, and extends the cache. */
import { KilnError, assertNever, fail } from "../errors.ts";
import { ndarray, type NDArray } from "../ir/ndarray.ts";
import { evalDim, formatShape, isSymbol, type Bindings } from "../ir/shape.ts";
import * as map from "./kernels-map.ts";
import { attention, attentionCached, matmul } from "./kernels-matmul.ts";
import { layerNorm, reduce, softmax } from "./kernels-reduce.ts";
import { bufferElements, planMemory, type MemoryPlan } from "./memory-plan.ts";
import type { Buffer, Kernel, Phase, Program, View } from "./program.ts";
import { count, rowMajorStrides, type Strided } from "./strided.ts";
import { evalSym } from "./sym.ts";

export type WeightLike =
  | Float32Array
  | Float64Array
  | { readonly shape: readonly number[]; readonly data: ArrayLike<number> };

export interface SessionOptions {
  /** Called before each kernel runs (tests count dispatches with it). */
  readonly onKernel?: (k: Kernel) => void;
}

export interface Session {
  readonly program: Program;
  /** Positions held in the KV cache (0 without one). */
  readonly cachedLength: number;
  /** A full forward (a prefill when there is a KV cache): every input, outputs for every position. */
  run(inputs: ReadonlyMap<string, NDArray>): NDArray[];
  /** Decode: only the step inputs for the new positions; outputs for those positions. */
  step(inputs: ReadonlyMap<string, NDArray>): NDArray[];
}

function loadWeight(b: Buffer, w: WeightLike | undefined): Float64Array {
  const name = b.name ?? b.node;
  if (!w) fail("checkpoint", `tensor "${name}"`, "missing");
  const want = b.shape as readonly number[];
  const data = "shape" in w ? w.data : w;
  const shape = "shape" in w ? w.shape : [data.length];
  const n = bufferElements(b, new Map());
  if (data.length !== n || ("shape" in w && formatShape(shape) !== formatShape(want)))
    fail("checkpoint", `tensor "${name}"`, `shape [${shape}] but the model needs [${want}]`);
  return Float64Array.from(data);
}

/** Binds the dims of the fed inputs' shapes, checking ranks, sizes and bounds. */
function bindInputs(
  p: Program,
  ids: readonly number[],
  inputs: ReadonlyMap<string, NDArray>,
  b: Map<string, number>,
): void {
  for (const id of ids) {
    const buf = p.buffers[id];
    const name = buf.name!;
    const fed = inputs.get(name);
    const where = `input "${name}"`;
    if (!fed) fail("input", where, `not given (expects ${buf.dtype}${formatShape(buf.shape)})`);
    const decl = buf.shape;
    if (fed.shape.length !== decl.length)
      fail("input", where, `expects rank ${decl.length} ${formatShape(decl)}, got [${fed.shape}]`);
    decl.forEach((d, i) => {
      const got = fed.shape[i];
      if (typeof d === "string" && isSymbol(d) && !b.has(d)) {
        const bound = p.bounds.find((x) => x.dim === d);
        if (bound && got > bound.max)
          fail("input", where, `length ${got} exceeds ${bound.why} (${d} ≤ ${bound.max})`);
        b.set(d, got);
      }
      if (evalDim(d, b) !== got)
        fail("input", where, `expects ${formatShape(decl)}, got [${fed.shape}] (dim ${i})`);
    });
  }
}

const copyOf = (a: NDArray): NDArray => ndarray(a.shape, a.data);

const sameArray = (a: NDArray, b: NDArray | undefined) =>
  b !== undefined &&
  formatShape(a.shape) === formatShape(b.shape) &&
  a.data.every((x, i) => Object.is(x, b.data[i]));

export function createSession(
  p: Program,
  weights: (name: string) => WeightLike | undefined,
  options: SessionOptions = {},
): Session {
  const own = new Map<number, Float64Array>(); // every buffer outside the arena
  let arena = new Float64Array(0);
  let plan: MemoryPlan | undefined;
  let planKey = "";
  let bindings = new Map<string, number>();
  let cached = 0;
  let source: Map<string, NDArray> | undefined; // the source inputs the source phase last ran on
  const kv = p.kvCache;
  const stepIds = p.inputs.filter((id) => p.buffers[id].phase === "step");
  const sourceIds = p.inputs.filter((id) => p.buffers[id].phase !== "step");

  // An array of its own for each buffer outside the arena, (re)made when its size changes.
  const storage = (id: number): [Float64Array, number] => {
    if (plan && plan.offsets.has(id)) return [arena, plan.offsets.get(id)!];
    const n = bufferElements(p.buffers[id], bindings);
    let a = own.get(id);
    if (!a || a.length !== n) own.set(id, (a = new Float64Array(n)));
    return [a, 0];
  };
  const strided = (v: View): Strided => {
    const [data, base] = storage(v.buffer);
    return {
      data,
      offset: base + evalSym(v.offset, bindings),
      shape: v.shape.map((d) => evalDim(d, bindings)!),
      strides: v.strides.map((s) => evalSym(s, bindings)),
    };
  };
  const whole = (id: number): Strided => {
    const [data, offset] = storage(id);
    const shape = p.buffers[id].shape.map((d) => evalDim(d, bindings)!);
    return { data, offset, shape, strides: rowMajorStrides(shape) };
  };
  const runPhase = (phase: Phase) => {
    for (const k of p.kernels) {
      if (k.phase !== phase) continue;
      options.onKernel?.(k);
      runKernel(k, k.inputs.map(strided), whole(k.output), bindings, `@${p.name} %${k.node}`);
    }
  };
  const replan = () => {
    const key = [...bindings].filter(([s]) => !kv.enabled || s !== kv.past).join(",");
    if (plan && key === planKey) return;
    plan = planMemory(p, bindings, { align: 1, bytes: () => 1 });
    planKey = key;
    if (arena.length < plan.arenaBytes) arena = new Float64Array(plan.arenaBytes);
  };
  const named = (id: number) => p.buffers[id].name!;
  const feed = (ids: readonly number[], inputs: ReadonlyMap<string, NDArray>) => {
    for (const id of ids) own.set(id, Float64Array.from(inputs.get(named(id))!.data));
  };
  const results = () =>
    p.outputs.map((id) => {
      const s = whole(id);
      return ndarray(s.shape, s.data.subarray(s.offset, s.offset + count(s.shape)));
    });

  for (const b of p.buffers) if (b.role === "param") own.set(b.id, loadWeight(b, weights(b.name!)));
  runPhase("load");
  for (const b of p.buffers) if (b.role === "temp" && b.phase === "load") own.delete(b.id);

  return {
    program: p,
    get cachedLength() {
      return cached;
    },
    run(inputs) {
      const b = new Map<string, number>();
      bindInputs(p, p.inputs, inputs, b);
      if (kv.enabled) b.set(kv.past, 0);
      const sameSource =
        source !== undefined &&
        sourceIds.every((id) => sameArray(inputs.get(named(id))!, source?.get(named(id))));
      bindings = b;
      replan();
      if (!sameSource) {
        source = undefined; // until the source phase has finished
        feed(sourceIds, inputs);
        runPhase("source");
        source = new Map(sourceIds.map((id) => [named(id), copyOf(inputs.get(named(id))!)]));
      }
      feed(stepIds, inputs);
      runPhase("step");
      cached = kv.enabled ? (bindings.get(p.seqDim ?? "") ?? 0) : 0;
      return results();
    },
    step(inputs) {
      if (!kv.enabled) fail("input", `@${p.name}`, `no KV cache: ${kv.reason}`);
      if (source === undefined && sourceIds.length > 0)
        fail("input", `@${p.name}`, "step before run: the source has not been fed");
      for (const id of sourceIds)
        if (inputs.has(named(id)))
          fail("input", `input "${named(id)}"`, "is fed once per source, by run");
      const b = new Map([...bindings].filter(([s]) => s !== p.seqDim));
      bindInputs(p, stepIds, inputs, b);
      const t = b.get(p.seqDim ?? "") ?? 0;
      if (kv.capacity !== undefined && cached + t > kv.capacity)
        fail(
          "input",
          `input "${p.buffers[stepIds[0]].name}"`,
          `${cached} cached + ${t} new positions exceed the KV cache's ${kv.capacity} rows`,
        );
      b.set(kv.past, cached);
      bindings = b;
      replan();
      feed(stepIds, inputs);
      runPhase("step");
      cached += t;
      return results();
    },
  };
}

function runKernel(k: Kernel, ins: Strided[], out: Strided, b: Bindings, where: string): void {
  const body = k.body;
  try {
    switch (body.kind) {
      case "expr":
        return map.mapExpr(body.expr, ins, out);
      case "copy":
        return map.copy(ins[0], out);
      case "masked_fill":
        return map.maskedFill(body.value, ins, out);
      case "causal_mask":
        return map.causalMask(ins[0], out);
      case "range":
        return map.range(evalDim(body.start, b)!, out);
      case "sinusoidal":
        return map.sinusoidal(body.dim, ins[0], out);
      case "concat":
        return map.concat(body.axis, ins, out);
      case "gather":
        return map.gather(ins[0], ins[1], out, { where });
      case "softmax":
        return softmax(body, ins[0], body.masked ? ins[1] : undefined, out);
      case "layer_norm":
        return layerNorm(body.eps, body.expr, ins, out);
      case "reduce":
        return reduce(body.axis, body.mean, ins[0], out);
      case "matmul":
        return matmul(body.transposeB, body.expr, ins, out);
      case "attention":
        return attention(body, ins, out);
      case "attention_cached":
        return attentionCached(body, evalDim(body.past, b)!, ins, out);
      default:
        return assertNever(body, "kernel body");
    }
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new Error(`${where} (${k.name}): ${(e as Error).message}`, { cause: e });
  }
}
