import { fail } from "../../compiler/errors.ts";
import type { Graph } from "../../compiler/ir/graph.ts";
import { printGraph } from "../../compiler/ir/print.ts";
import { dimSymbols } from "../../compiler/ir/shape.ts";
import { lower } from "../../compiler/lower/lower.ts";
import { planMemory } from "../../compiler/lower/memory-plan.ts";
import { formatBody } from "../../compiler/lower/print.ts";
import type { Program } from "../../compiler/lower/program.ts";
import { runPipeline, type PipelineResult } from "../../compiler/passes/pipeline.ts";
import { intFlag, onePositional, parse } from "../args.ts";
import { loadModelGraph } from "../load-model.ts";
import { PASS_HELP, PASS_OPTIONS, passFlags } from "../pass-flags.ts";

export const inspectHelp = `kiln inspect <model|checkpoint-dir> [options]

Shows what the compiler makes of a model: the optimized graph as text IR (one line per value,
its type on the right, the pass that made it in a comment), the kernels it lowers to in
dispatch order, the memory plan, and the fusions that were refused and why.
<model> is a DSL model file (models/gpt2.ts, my-model.ts), a built-in name (gpt2, seq2seq),
or a checkpoint folder (config.json decides the model; weights are not read).

  --config key=value    override a default of a model file's config (repeatable)
  --seq-len N           the sequence length for the memory figures (default 128, or the
                        model's context if shorter); every input's sequence dim takes it
  --format text|json    text (default), or one JSON object: {passes, kernels, memory, notFused}
  --locations           show the DSL source line that made each value (text)
${PASS_HELP}`;

export interface InspectReport {
  readonly passes: readonly { name: string; nodes: number; rewrites: number }[];
  readonly kernels: readonly {
    name: string;
    family: string;
    phase: string;
    covers: readonly string[];
  }[];
  readonly memory: { seqLen: number; peakBytes: number; unplannedBytes: number; liveBytes: number };
  readonly notFused: PipelineResult["notFused"];
  readonly kvCache: { enabled: boolean; reason?: string };
}

/** Every symbolic dim of the inputs (and a KV cache's past length, 0) bound for the figures. */
function bindings(g: Graph, p: Program, seqLen: number): Map<string, number> {
  const b = new Map<string, number>();
  for (const k of g.inputs)
    for (const d of g.nodes.getNodeAttribute(k, "type").shape)
      for (const s of dimSymbols(d)) b.set(s, seqLen);
  if (p.kvCache.enabled) b.set(p.kvCache.past, 0);
  return b;
}

/** The requested length, shortened to the tightest bound on an input's sequence dim. */
function effectiveSeqLen(g: Graph, seqLen: number): number {
  let n = seqLen;
  for (const k of g.inputs)
    for (const d of g.nodes.getNodeAttribute(k, "type").shape)
      for (const s of dimSymbols(d)) n = Math.min(n, g.bounds.get(s)?.max ?? n);
  return n;
}

export function report(
  graph: Graph,
  result: PipelineResult,
  program: Program,
  seqLen: number,
): InspectReport {
  const plan = planMemory(program, bindings(graph, program, seqLen));
  return {
    passes: result.stats.map((s) => ({ name: s.name, nodes: s.nodes, rewrites: s.rewrites })),
    kernels: program.kernels.map((k) => ({
      name: k.name,
      family: k.family,
      phase: k.phase,
      covers: k.covers,
    })),
    memory: {
      seqLen,
      peakBytes: plan.peakBytes,
      unplannedBytes: plan.unplannedBytes,
      liveBytes: plan.liveBytes,
    },
    notFused: result.notFused,
    kvCache: program.kvCache.enabled
      ? { enabled: true }
      : { enabled: false, reason: program.kvCache.reason },
  };
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(2)} MiB`;
}

function textReport(r: InspectReport, program: Program, ir: string): string {
  const lines = [
    ir,
    `// passes: ${r.passes.map((p) => `${p.name} ${p.rewrites}`).join(", ") || "none"}`,
  ];
  const count = (ph: string) => program.kernels.filter((k) => k.phase === ph).length;
  lines.push(
    `// ${program.kernels.length} kernels (load ${count("load")}, source ${count("source")}, step ${count("step")}); kv cache ${r.kvCache.enabled ? "on" : `off: ${r.kvCache.reason}`}`,
  );
  for (const k of program.kernels)
    lines.push(
      `//   ${k.name.padEnd(24)} ${k.family.padEnd(13)} ${k.phase.padEnd(6)} %${k.node}  [${formatBody(k.body)}]`,
    );
  const m = r.memory;
  lines.push(
    `// memory at seq len ${m.seqLen}: planned peak ${mib(m.peakBytes)}, unplanned ${mib(m.unplannedBytes)} (${((100 * m.peakBytes) / Math.max(1, m.unplannedBytes)).toFixed(1)}%)`,
  );
  if (r.notFused.length) {
    lines.push(`// not fused (${r.notFused.length}):`);
    for (const n of r.notFused) lines.push(`//   ${n.pattern} at ${n.at}: ${n.reason}`);
  }
  return lines.join("\n") + "\n";
}

export async function inspect(argv: readonly string[]): Promise<string> {
  const { values, positionals } = parse("inspect", argv, {
    config: { type: "string", multiple: true },
    locations: { type: "boolean" },
    format: { type: "string" },
    "seq-len": { type: "string" },
    ...PASS_OPTIONS,
  });
  const format = values.format ?? "text";
  if (format !== "text" && format !== "json")
    fail("usage", "--format", `unknown format ${JSON.stringify(format)} (text, json)`);
  const seqLen = intFlag("--seq-len", values["seq-len"], 128)!;
  if (seqLen < 1) fail("usage", "--seq-len", `must be at least 1, got ${seqLen}`);
  const graph = await loadModelGraph(
    onePositional("inspect", positionals, "model"),
    values.config ?? [],
  );
  let out = "";
  const flags = passFlags(values, (s) => (out += s));
  const result = runPipeline(graph, flags.passes, flags.afterPass);
  const program = lower(result.graph);
  const r = report(graph, result, program, effectiveSeqLen(graph, seqLen));
  if (format === "json") return JSON.stringify(r) + "\n";
  return (
    out + textReport(r, program, printGraph(result.graph, { locations: values.locations ?? false }))
  );
}
