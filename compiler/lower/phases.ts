/** When each node runs. Rule: a node depends on an input when an operand does, or when a dim of
 *  its shape (or of a range's start) is a symbol that input binds. Step inputs are the inputs
 *  whose shape mentions the sequence dim T; when none does, every input is a step input.
 *  Then: no input → load; only non-step inputs → source; any step input → step. A symbol that
 *  no input binds counts as a step dependency (it can only be known at run time). */
import { nodeData, operands, type Graph } from "../ir/graph.ts";
import { dimSymbols, isSymbol, type Dim } from "../ir/shape.ts";
import { STEP_SYMBOL, type Phase } from "./program.ts";

export interface PhaseInfo {
  readonly phase: ReadonlyMap<string, Phase>;
  /** T when some input has it. */
  readonly seqDim: string | undefined;
}

const RANK: { readonly [P in Phase]: number } = { load: 0, source: 1, step: 2 };

export const later = (a: Phase, b: Phase): Phase => (RANK[a] >= RANK[b] ? a : b);

function symbolsOf(g: Graph, key: string): string[] {
  const n = nodeData(g, key);
  const dims: Dim[] = [...n.type.shape];
  if (n.op === "range") dims.push(n.attrs.start, n.attrs.size);
  return dims.flatMap(dimSymbols);
}

export function analyzePhases(g: Graph, order: readonly string[]): PhaseInfo {
  const mentions = (k: string, s: string) => symbolsOf(g, k).includes(s);
  const seqDim = g.inputs.some((k) => mentions(k, STEP_SYMBOL)) ? STEP_SYMBOL : undefined;
  const inputPhase = new Map<string, Phase>(
    g.inputs.map((k) => [k, seqDim === undefined || mentions(k, seqDim) ? "step" : "source"]),
  );
  // The phase a symbol's value is known in: the earliest input that binds it.
  const symPhase = new Map<string, Phase>();
  for (const k of g.inputs)
    for (const d of nodeData(g, k).type.shape)
      if (typeof d === "string" && isSymbol(d)) {
        const p = inputPhase.get(k)!;
        const had = symPhase.get(d);
        symPhase.set(d, had === undefined || RANK[p] < RANK[had] ? p : had);
      }
  const phase = new Map<string, Phase>();
  for (const k of order) {
    let p: Phase = inputPhase.get(k) ?? "load";
    for (const o of operands(g, k)) p = later(p, phase.get(o)!);
    for (const s of symbolsOf(g, k)) p = later(p, symPhase.get(s) ?? "step");
    phase.set(k, p);
  }
  return { phase, seqDim };
}
