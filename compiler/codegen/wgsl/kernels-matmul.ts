/** The matmul family as WGSL (placeholder until its generator lands). */
import type { KernelBody } from "../../lower/program.ts";
import type { WgslKernel, WgslScope } from "./kernel.ts";
import { notYet } from "./kernels-map.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

export const matmul = (s: WgslScope, _b: Body<"matmul">, _doc: readonly string[]): WgslKernel =>
  notYet(s, "matmul");
