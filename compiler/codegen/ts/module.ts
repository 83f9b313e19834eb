/** emitModule — a Program as one self-contained TypeScript module (no imports):
 *
 *    header comment          the program: dims, buffers, the arena plan
 *    prelude                 public types (Tensor, Output, Session), RuntimeError, input checks
 *    scalar helpers          kiln_gelu, … — only those the kernels call
 *    one function per kernel specialized: static sizes and strides baked in, symbolic dims as
 *                            parameters (d0, d1, …), each with a header comment holding the IR
 *                            line it implements; a matmul with packed weights also has its
 *                            pack_… function, run once at load. Kernels with the same code (a
 *                            transformer's layers) share the first one's function, whose
 *                            header lists them all (shared-code.ts)
 *    export const model      names, shapes and dims of the inputs, outputs and params (strings)
 *    load(weights)           params checked and taken, the load phase, packed weights (shareable)
 *    createSession(weights)  the dispatch (session.ts), over load's result or the weights
 *
 *  Assembled with ts-morph; `formatModule` runs prettier over it for the shipped artifact.
 *  Deterministic: the same Program (and options) gives the same text. User strings appear only
 *  in comments and string literals (source.ts states the naming rule). */
import { assertNever } from "../../errors.ts";
import type { Graph, NodeData } from "../../ir/graph.ts";
import { nodeData, operands, topoOrder } from "../../ir/graph.ts";
import { formatAttrs } from "../../ir/print.ts";
import { formatShape, formatType } from "../../ir/shape.ts";
import { formatView } from "../../lower/print.ts";
import type { Kernel, Program } from "../../lower/program.ts";
import { renderHelpers, type Helper } from "../helpers.ts";
import { Scope, type KernelFunction } from "./kernel.ts";
import { attention, attentionCached } from "./kernels-attention.ts";
import * as map from "./kernels-map.ts";
import { matmul } from "./kernels-matmul.ts";
import { layerNorm, reduce, softmax } from "./kernels-reduce.ts";
import { PRELUDE } from "./prelude.ts";
import { dimVars, sessionBody } from "./session.ts";
import { sharedCode } from "./shared-code.ts";
import { tsMorph } from "./ts-morph.ts";
import { comment, literal, type DimVars } from "./source.ts";

export interface EmitOptions {
  /** The graph the program was lowered from: the kernels' header comments then show each
   *  node's operands by name (otherwise, the buffers the kernel reads). */
  readonly graph?: Graph;
  /** The graph before the passes: the header comments then show, line by line, the original
   *  nodes each kernel covers. */
  readonly source?: Graph;
  /** Maxima for dims the graph does not bound (or tighter ones), to size the arena with. */
  readonly maxDims?: ReadonlyMap<string, number>;
}

/** A valid identifier for a kernel: its Program name is `k<index>_<op>`, made of op names. */
function kernelIdent(k: Kernel, i: number): string {
  return /^k\d+_[a-z_]+$/.test(k.name) ? k.name : `k${i}`;
}

/** A node as a line of text IR: `%y = op(%a, %b) {attrs} : type  # origin`. */
function irLine(g: Graph, key: string): string {
  const n = nodeData(g, key);
  const args = operands(g, key).map((o) => `%${o}`);
  return `%${key} = ${n.op}(${args.join(", ")})${formatAttrs(n)} : ${formatType(n.type)}${n.origin ? `  # ${n.origin}` : ""}`;
}

const ranks = new WeakMap<Graph, Map<string, number>>();

/** Keys in the graph's topological order. */
function byOrder(g: Graph, keys: readonly string[]): string[] {
  let rank = ranks.get(g);
  if (!rank) ranks.set(g, (rank = new Map(topoOrder(g).map((k, i) => [k, i]))));
  return [...keys].sort((a, b) => rank.get(a)! - rank.get(b)!);
}

/** The kernel's IR line (from the graph it was lowered from, when given; else rebuilt from the
 *  kernel, its operands named by the buffers it reads), the lines of the original nodes it
 *  covers (when the graph before the passes is given; else their names), and what it reads and
 *  writes. */
export function kernelDoc(p: Program, k: Kernel, name: string, o: EmitOptions): string[] {
  const out = p.buffers[k.output];
  let ir: string;
  if (o.graph?.nodes.hasNode(k.node)) ir = irLine(o.graph, k.node);
  else {
    const n = { op: k.op, attrs: k.attrs, type: { dtype: out.dtype, shape: out.shape } };
    const args = k.inputs.map((v) => `%${p.buffers[v.buffer].node}`);
    ir = `%${k.node} = ${k.op}(${args.join(", ")})${formatAttrs(n as NodeData)} : ${formatType(n.type)}`;
  }
  const lines = [`${name} (${k.family}, ${k.phase}): ${comment(ir)}`];
  const src = o.source;
  const covered = k.covers.filter((c) => c !== k.node || (src && src !== o.graph));
  if (src && covered.every((c) => src.nodes.hasNode(c)) && covered.length > 1)
    lines.push("covers:", ...byOrder(src, covered).map((c) => `  ${comment(irLine(src, c))}`));
  else if (covered.some((c) => c !== k.node))
    lines.push(`covers ${comment(covered.map((c) => `%${c}`).join(" "))}`);
  const reads = k.inputs.map(
    (v) => `${formatView(v, p.buffers[v.buffer])} (%${p.buffers[v.buffer].node})`,
  );
  if (reads.length) lines.push(`reads ${comment(reads.join(", "))}`);
  lines.push(
    `writes b${out.id} ${comment(`${out.dtype}${formatShape(out.shape)}`)}${k.alsoWrites.length ? ` and rows of ${k.alsoWrites.map((b) => `b${b}`).join(", ")}` : ""}`,
  );
  return lines;
}

function kernelFunction(p: Program, k: Kernel, dims: DimVars, doc: string[]): KernelFunction {
  const s = new Scope(p, k, dims);
  const b = k.body;
  switch (b.kind) {
    case "expr":
      return map.mapExpr(s, b, doc);
    case "copy":
      return map.copy(s, doc);
    case "masked_fill":
      return map.maskedFill(s, b, doc);
    case "causal_mask":
      return map.causalMask(s, doc);
    case "range":
      return map.range(s, b, doc);
    case "sinusoidal":
      return map.sinusoidal(s, b, doc);
    case "concat":
      return map.concat(s, b, doc);
    case "gather":
      return map.gather(s, doc, `@${p.name} %${k.node}`);
    case "softmax":
      return softmax(s, b, doc);
    case "layer_norm":
      return layerNorm(s, b, doc);
    case "reduce":
      return reduce(s, b, doc);
    case "matmul":
      return matmul(s, b, doc, dims);
    case "attention":
      return attention(s, b, doc);
    case "attention_cached":
      return attentionCached(s, b, doc);
    default:
      return assertNever(b, "kernel body");
  }
}

/** The module's header: what it computes, its dims and buffers. */
function header(
  p: Program,
  dims: DimVars,
  capacity: ReadonlyMap<string, number>,
  arena: number,
): string {
  const dimLines = [...dims].map(([s, v]) => {
    const bound = p.bounds.find((b) => b.dim === s);
    const cached = p.kvCache.enabled && p.kvCache.past === s;
    const what = cached
      ? "the positions in the KV cache"
      : bound
        ? `≤ ${bound.max}: ${bound.why}`
        : capacity.has(s)
          ? `≤ ${capacity.get(s)} (compiled capacity)`
          : "unbounded";
    return ` *   ${v} = ${comment(`${s} (${what})`)}`;
  });
  const planned = [...capacity].map(([s, n]) => `${s} = ${n}`).join(", ");
  const bufLines = p.buffers.map(
    (b) =>
      ` *   b${b.id} ${b.role} ${b.phase} ${comment(`${b.dtype}${formatShape(b.shape)} %${b.node}${b.name !== undefined ? ` ${JSON.stringify(b.name)}` : ""}`)}`,
  );
  const kv = p.kvCache.enabled
    ? `KV cache: ${p.kvCache.entries.length} attention(s), ${p.kvCache.capacity ?? 0} rows each`
    : `no KV cache: ${comment(p.kvCache.reason)}`;
  return [
    `/**`,
    ` * ${comment(`@${p.name}`)}: TypeScript generated by kiln. Do not edit.`,
    ` *`,
    ` * load(weights) takes the params, runs the load phase and packs the matmul weights; createSession`,
    ` * (its result, or the weights) makes a session: session.run(inputs) is a`,
    ` * full forward, session.step(inputs) decodes with the KV cache. ${kv}.`,
    ` *`,
    ` * Dims (run-time values):`,
    ...dimLines,
    ` * Buffers (id, role, phase, type, IR value):`,
    ...bufLines,
    ` * Arena: ${arena} elements, planned at ${comment(planned || "static sizes")}.`,
    ` */`,
  ].join("\n");
}

/** The `model` constant: the module's interface as data. */
function modelConst(
  p: Program,
  dims: DimVars,
  capacity: ReadonlyMap<string, number>,
  arena: number,
): string {
  const shape = (s: readonly (number | string)[]) =>
    `[${s.map((d) => (typeof d === "number" ? String(d) : literal(d))).join(", ")}]`;
  const io = (id: number, withPhase: boolean) => {
    const b = p.buffers[id];
    return `{ name: ${literal(b.name ?? b.node)}, dtype: ${literal(b.dtype)}, shape: ${shape(b.shape)}${withPhase ? `, phase: ${literal(b.phase === "step" ? "step" : "source")}` : ""} }`;
  };
  const params = p.buffers.filter((b) => b.role === "param");
  const lines = [
    `/** The module's interface: inputs (run's order), outputs, params (the weights it asks for), dims. */`,
    `export const model = {`,
    `  name: ${literal(p.name)},`,
    `  inputs: [${p.inputs.map((id) => io(id, true)).join(", ")}],`,
    `  outputs: [${p.outputs.map((id) => io(id, false)).join(", ")}],`,
    `  params: [${params.map((b) => `{ name: ${literal(b.name ?? b.node)}, dtype: ${literal(b.dtype)}, shape: ${shape(b.shape)} }`).join(", ")}],`,
    `  dims: [${[...dims.keys()].map((s) => `{ name: ${literal(s)}, max: ${capacity.get(s) ?? "Infinity"} }`).join(", ")}],`,
    `  kvCache: ${p.kvCache.enabled ? `{ capacity: ${p.kvCache.capacity ?? 0} }` : "null"},`,
    `  arenaElements: ${arena},`,
    `} as const;`,
  ];
  return lines.join("\n");
}

/** One function per kernel, kernels with the same code sharing the first one's (shared-code.ts):
 *  its header then lists every kernel it runs; the others call it and are not emitted. */
function kernelFunctions(p: Program, dims: DimVars, o: EmitOptions): KernelFunction[] {
  const named = p.kernels.map((k, i) => ({ ...k, name: kernelIdent(k, i) }) as Kernel);
  const docs = named.map((k) => kernelDoc(p, k, k.name, o));
  const own = named.map((k, i) => kernelFunction(p, k, dims, docs[i]));
  const firsts = sharedCode(own);
  return own.map((f, i) => {
    const r = firsts[i];
    if (r !== i) {
      const pack = f.pack && { ...f.pack, callee: own[r].pack?.name };
      return { ...f, callee: own[r].name, ...(pack ? { pack } : {}) };
    }
    const others = docs.filter((_, j) => j !== i && firsts[j] === i);
    if (others.length === 0) return f;
    // the same code, generated again under a header that names every kernel it runs
    const doc = [
      ...docs[i],
      `the same function runs ${others.length} more kernel(s):`,
      ...others.map((d) => `  ${d[0]}`),
    ];
    return kernelFunction(p, named[i], dims, doc);
  });
}

export function emitModule(p: Program, options: EmitOptions = {}): string {
  const dims = dimVars(p);
  const fns = kernelFunctions(p, dims, options);
  const session = sessionBody(
    { ...p, kernels: p.kernels.map((k, i) => ({ ...k, name: kernelIdent(k, i) }) as Kernel) },
    fns,
    dims,
    options.maxDims,
  );
  const helpers = new Set<Helper>(fns.flatMap((f) => [...f.helpers]));

  const { IndentationText, Project, QuoteKind } = tsMorph();
  const project = new Project({
    useInMemoryFileSystem: true,
    manipulationSettings: {
      indentationText: IndentationText.TwoSpaces,
      quoteKind: QuoteKind.Double,
    },
  });
  // The parts are whole declarations: one parse of their text, then the session as a structure.
  const parts = [header(p, dims, session.capacity, session.arenaElements), PRELUDE.trim()];
  if (helpers.size) parts.push(renderHelpers(helpers, "ts").trim());
  for (const f of fns) {
    if (f.callee) continue; // another kernel's function runs it
    if (f.pack) parts.push(f.pack.source.trim());
    parts.push(f.source.trim());
  }
  parts.push(modelConst(p, dims, session.capacity, session.arenaElements));
  const file = project.createSourceFile("module.ts", parts.join("\n\n") + "\n");
  file.addFunction({
    name: "load",
    isExported: true,
    docs: [
      "Checks and takes the params, runs the load phase and packs the matmul weights: what every session of these weights shares.",
    ],
    parameters: [
      { name: "weights", type: "WeightSource" },
      { name: "memory", type: "Memory", hasQuestionToken: true },
    ],
    statements: session.load.join("\n"),
  });
  file.addTypeAlias({
    name: "Loaded",
    isExported: true,
    type: "ReturnType<typeof load>",
    docs: ["The params and packed weights, as load returns them."],
  });
  file.addFunction({
    name: "createSession",
    isExported: true,
    docs: [
      "A session: its own arena, KV cache and source state, over loaded weights (or weights it loads itself).",
    ],
    parameters: [
      { name: "weights", type: "WeightSource | Loaded" },
      { name: "threads", type: "Threads", hasQuestionToken: true },
    ],
    returnType: "Session",
    statements: session.body.join("\n"),
  });
  return file.getFullText().trimStart();
}

/** The module through prettier (the repository's style), for the shipped artifact. */
export async function formatModule(source: string): Promise<string> {
  const prettier = await import("prettier");
  return prettier.format(source, { parser: "typescript", printWidth: 100 });
}
