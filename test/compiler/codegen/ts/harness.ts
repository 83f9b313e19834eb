/** Compiling a graph or a Program with the TypeScript backend and running it next to the Program
 *  interpreter, for the codegen tests. Modules are loaded the way the runtime loads them
 *  (runtime/cpu/load.ts), from a cache folder of the test run's own. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { emitModule, type EmitOptions } from "../../../../compiler/codegen/ts/module.ts";
import type { Graph } from "../../../../compiler/ir/graph.ts";
import { ndarray, type NDArray } from "../../../../compiler/ir/ndarray.ts";
import { createSession, type WeightLike } from "../../../../compiler/lower/execute.ts";
import { lower } from "../../../../compiler/lower/lower.ts";
import type { Program } from "../../../../compiler/lower/program.ts";
import { loadModule } from "../../../../runtime/cpu/load.ts";
import type { CompiledModule, Output, Session, Tensor } from "../../../../runtime/cpu/module.ts";

const CACHE = mkdtempSync(join(tmpdir(), "kiln-codegen-test-"));
afterAll(() => rmSync(CACHE, { recursive: true, force: true }));

export function compile(p: Program, options: EmitOptions = {}): CompiledModule {
  return loadModule(emitModule(p, options), CACHE);
}

export type Inputs = ReadonlyMap<string, NDArray>;
export type Params = (name: string) => WeightLike | undefined;

/** The weights as the generated session takes them (float32 values by name). */
export function weightSource(params: Params): (name: string) => ArrayLike<number> | undefined {
  return (name) => {
    const w = params(name);
    if (!w) return undefined;
    return "shape" in w ? w.data : w;
  };
}

/** The inputs in the module's order (only `phases`' inputs). */
export function tensors(m: CompiledModule, inputs: Inputs, phases = ["source", "step"]): Tensor[] {
  return m.model.inputs
    .filter((i) => phases.includes(i.phase))
    .map((i) => {
      const a = inputs.get(i.name);
      if (!a) throw new Error(`no input ${i.name}`);
      return { shape: a.shape, data: a.data };
    });
}

export const asNd = (o: Output): NDArray => ndarray(o.shape, o.data);

/** A generated session and an interpreter session on the same program and weights. */
export interface Pair {
  readonly program: Program;
  readonly module: CompiledModule;
  readonly generated: Session;
  readonly interpreted: ReturnType<typeof createSession>;
  run(inputs: Inputs): { got: NDArray[]; want: NDArray[] };
  step(inputs: Inputs): { got: NDArray[]; want: NDArray[] };
}

export function pair(g: Graph | Program, params: Params, options: EmitOptions = {}): Pair {
  const program = "kernels" in g ? g : lower(g);
  const module = compile(program, options);
  const generated = module.createSession(weightSource(params));
  const interpreted = createSession(program, params);
  return {
    program,
    module,
    generated,
    interpreted,
    run: (inputs) => ({
      got: generated.run(tensors(module, inputs)).map(asNd),
      want: interpreted.run(inputs),
    }),
    step: (inputs) => ({
      got: generated.step(tensors(module, inputs, ["step"])).map(asNd),
      want: interpreted.step(inputs),
    }),
  };
}

/** max over elements of |a − b| / max(1, |b|); NaN must meet NaN and ±∞ the same ∞. */
export function relError(a: NDArray, b: NDArray): number {
  if (a.shape.join() !== b.shape.join()) return Infinity;
  let worst = 0;
  for (let i = 0; i < b.data.length; i++) {
    const [x, y] = [a.data[i], b.data[i]];
    if (Number.isNaN(y) || !Number.isFinite(y)) {
      if (!Object.is(x, y) && !(Number.isNaN(x) && Number.isNaN(y))) return Infinity;
      continue;
    }
    const d = Math.abs(x - y) / Math.max(1, Math.abs(y));
    worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
  }
  return worst;
}
