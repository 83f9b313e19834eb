/** The attention family as WGSL (placeholder until its generator lands). */
import type { KernelBody } from "../../lower/program.ts";
import type { WgslKernel, WgslScope } from "./kernel.ts";
import { notYet } from "./kernels-map.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

export const attention = (
  s: WgslScope,
  _b: Body<"attention">,
  _doc: readonly string[],
): WgslKernel => notYet(s, "attention");
export const attentionCached = (
  s: WgslScope,
  _b: Body<"attention_cached">,
  _doc: readonly string[],
): WgslKernel => notYet(s, "attention_cached");
