/** The generated matmul kernel and its pack as callable functions, for the benchmarks (kiln bench's
 *  matmul figures, bench/matmul-kernel.ts): the kernel's TypeScript is transpiled with TypeScript
 *  and instantiated with `new Function` — here, in a benchmark, only; the runtime never evaluates
 *  generated strings (it loads its modules through runtime/cpu/load.ts). Each call makes a fresh
 *  instance, so V8's type feedback for one shape or schedule never slows another. */
import ts from "typescript";
import { renderHelpers } from "../compiler/codegen/helpers.ts";
import { renderMatmul, renderPackB, type MatmulSpec } from "../compiler/codegen/ts/matmul.ts";

export type Kernel = (...args: unknown[]) => void;
export type Pack = (b: Float32Array, off: number) => Float32Array;

export function instantiateMatmul(spec: MatmulSpec): { kernel: Kernel; pack: Pack } {
  const kernel = renderMatmul(spec);
  const pack = renderPackB(spec, kernel.name);
  const source = [renderHelpers(kernel.helpers, "ts"), pack.source, kernel.source].join("\n");
  const js = ts.transpileModule(source, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  }).outputText;
  const body = `${js.replace(/^export /gm, "")}\nreturn [${kernel.name}, ${pack.name}];`;
  const [k, p] = new Function(body)() as [Kernel, Pack];
  return { kernel: k, pack: p };
}
