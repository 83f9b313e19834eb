/** The row_reduction family as WGSL (placeholder until its generator lands). */
import type { KernelBody } from "../../lower/program.ts";
import type { WgslKernel, WgslScope } from "./kernel.ts";
import { notYet } from "./kernels-map.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

export const softmax = (s: WgslScope, _b: Body<"softmax">, _doc: readonly string[]): WgslKernel =>
  notYet(s, "softmax");
export const layerNorm = (
  s: WgslScope,
  _b: Body<"layer_norm">,
  _doc: readonly string[],
): WgslKernel => notYet(s, "layer_norm");
export const reduce = (s: WgslScope, _b: Body<"reduce">, _doc: readonly string[]): WgslKernel =>
  notYet(s, "reduce");
