/** lower — a graph (optimized or not) becomes a Program (program.ts states its rules).
 *  Nodes are visited in topological order: inputs and params become buffers; reshape,
 *  transpose, slice and tiling concats become views (a reshape no strides express becomes a
 *  copy kernel); every other node becomes one kernel with a fresh output buffer (a cached
 *  attention also writes its two cache buffers). Then graph outputs get their buffers (a copy
 *  when the value is a view or an input), roles follow from who reads what in which phase, and
 *  kernels are ordered by phase (load, source, step; topological within) and named.
 *  Deterministic: the same graph gives the same Program. */
import {
  nodeData,
  operands,
  topoOrder,
  type Graph,
  type NodeData,
  type OpNode,
} from "../ir/graph.ts";
import { dimSymbols, type Dim, type TensorType } from "../ir/shape.ts";
import { kernelFor } from "./bodies.ts";
import { analyzeKvCache, type KvAnalysis } from "./kv-cache.ts";
import { analyzePhases, type PhaseInfo } from "./phases.ts";
import {
  FAMILY,
  PHASES,
  type Buffer,
  type BufferRole,
  type Kernel,
  type KernelBody,
  type KvCacheEntry,
  type Phase,
  type Program,
  type View,
} from "./program.ts";
import { concatView, isWhole, reshapeView, sliceView, transposeView, wholeView } from "./views.ts";

/** A node's value: a view, and the view nodes folded into it on the way. */
interface Value {
  readonly view: View;
  readonly covers: readonly string[];
}

type DraftBuffer = { -readonly [K in keyof Buffer]: Buffer[K] };
type DraftKernel = Omit<Kernel, "name" | "family" | keyof OpNode> & {
  readonly op: OpNode;
  readonly suffix: string;
};

interface Lowering {
  readonly g: Graph;
  readonly info: PhaseInfo;
  readonly kv: KvAnalysis;
  /** The cached-length symbol, when the program keeps a KV cache. */
  readonly past: string | undefined;
  readonly buffers: DraftBuffer[];
  readonly kernels: DraftKernel[];
  readonly values: Map<string, Value>;
  readonly entries: KvCacheEntry[];
}

const unique = (xs: readonly string[]): string[] => [...new Set(xs)];
const plus = (d: Dim, s: string): Dim => (d === 0 ? s : `${s}+${d}`);
const opOf = (n: NodeData): OpNode => ({ op: n.op, attrs: n.attrs }) as OpNode;
const coversOf = (g: Graph, key: string) => nodeData(g, key).covers ?? [key];

export function lower(g: Graph): Program {
  const order = topoOrder(g);
  const info = analyzePhases(g, order);
  const kv = analyzeKvCache(g, order, info);
  const past = kv.ok ? freshSymbol(g, "P") : undefined;
  const c: Lowering = {
    g,
    info,
    kv,
    past,
    buffers: [],
    kernels: [],
    values: new Map(),
    entries: [],
  };
  for (const key of order) lowerNode(c, key);
  const outputs = g.outputs.map((key) => outputBuffer(c, key));
  assignRoles(c);
  const ordered = PHASES.flatMap((p) => c.kernels.filter((k) => k.phase === p));
  return {
    name: g.name,
    buffers: c.buffers,
    kernels: ordered.map(
      ({ op, suffix, ...k }, i): Kernel =>
        ({ ...op, name: `k${i}_${suffix}`, family: FAMILY[k.body.kind], ...k }) as Kernel,
    ),
    inputs: g.inputs.map((k) => c.values.get(k)!.view.buffer),
    outputs,
    bounds: [...g.bounds].map(([dim, b]) => ({ dim, max: b.max, why: b.why })),
    seqDim: info.seqDim,
    kvCache: kv.ok
      ? { enabled: true, past: past!, capacity: kv.capacity, entries: c.entries }
      : { enabled: false, reason: kv.reason },
  };
}

function newBuffer(
  c: Lowering,
  node: string,
  t: TensorType,
  role: BufferRole,
  phase: Phase,
  name?: string,
): number {
  const id = c.buffers.length;
  c.buffers.push({
    id,
    node,
    dtype: t.dtype,
    shape: t.shape,
    role,
    phase,
    ...(name ? { name } : {}),
  });
  return id;
}

/** One kernel computing `key` into a fresh buffer (and writing `alsoWrites`, state buffers). */
function emit(
  c: Lowering,
  key: string,
  body: KernelBody,
  inputs: readonly View[],
  from: readonly Value[],
  suffix?: string,
  alsoWrites: readonly number[] = [],
): number {
  const n = nodeData(c.g, key);
  const phase = c.info.phase.get(key)!;
  const output = newBuffer(c, key, n.type, "temp", phase);
  const covers = unique([...coversOf(c.g, key), ...from.flatMap((v) => v.covers)]);
  c.kernels.push({
    op: opOf(n),
    suffix: suffix ?? n.op,
    phase,
    node: key,
    covers,
    body,
    inputs,
    output,
    alsoWrites,
  });
  return output;
}

/** The node as a view of its operand, when it is a view op and strides express it. */
function viewOf(n: NodeData, ins: readonly View[]): View | undefined {
  if (n.op === "transpose") return transposeView(ins[0], n.attrs.perm);
  if (n.op === "slice") return sliceView(ins[0], n.attrs.axis, n.attrs.start, n.attrs.size);
  if (n.op === "reshape") return reshapeView(ins[0], n.type.shape);
  if (n.op === "concat") return concatView(ins, n.attrs.axis, n.type.shape);
  return undefined;
}

function lowerNode(c: Lowering, key: string): void {
  const n = nodeData(c.g, key);
  const ins = operands(c.g, key).map((k) => c.values.get(k)!);
  const phase = c.info.phase.get(key)!;
  if (n.op === "input" || n.op === "param") {
    const id = newBuffer(c, key, n.type, n.op, n.op === "param" ? "load" : phase, n.attrs.name);
    c.values.set(key, { view: wholeView(id, n.type.shape), covers: [] });
    return;
  }
  const view = viewOf(
    n,
    ins.map((v) => v.view),
  );
  if (view) {
    const covers = unique([...ins.flatMap((v) => v.covers), ...coversOf(c.g, key)]);
    c.values.set(key, { view, covers });
    return;
  }
  const { body, inputs } = kernelFor(
    n,
    ins.map((v) => v.view),
  );
  let id: number;
  if (body.kind === "attention" && isCached(c, key))
    id = emitCachedAttention(c, key, body, inputs, ins);
  else if (c.past !== undefined && phase === "step" && isStepRange(c, n, body))
    // A range over T numbers positions: a step's first one is P.
    id = emit(c, key, { ...body, start: plus(body.start, c.past) }, inputs, ins);
  else id = emit(c, key, body, inputs, ins);
  c.values.set(key, { view: wholeView(id, n.type.shape), covers: [] });
}

/** A causal self-attention of the step that the KV cache serves. */
const isCached = (c: Lowering, key: string): boolean => c.kv.ok && c.kv.cached.includes(key);

const isStepRange = (
  c: Lowering,
  n: NodeData,
  body: KernelBody,
): body is Extract<KernelBody, { kind: "range" }> =>
  body.kind === "range" && n.op === "range" && n.attrs.size === c.info.seqDim;

/** A causal self-attention with a KV cache: two state buffers [capacity, C], and one kernel
 *  that reads the step's k and v where they are, the cached rows from the buffers, and appends
 *  the step's rows to them (program.ts states the rule). */
function emitCachedAttention(
  c: Lowering,
  key: string,
  body: Extract<KernelBody, { kind: "attention" }>,
  [q, k, v]: readonly View[],
  from: readonly Value[],
): number {
  const n = nodeData(c.g, key);
  const shape = [c.kv.ok ? c.kv.capacity! : 0, q.shape[1]];
  const cache = () => newBuffer(c, key, { dtype: n.type.dtype, shape }, "state", "step");
  const [kc, vc] = [cache(), cache()];
  c.entries.push({ attention: key, k: kc, v: vc });
  const { heads, scale } = body;
  return emit(
    c,
    key,
    { kind: "attention_cached", heads, scale, past: c.past! },
    [q, k, v, wholeView(kc, shape), wholeView(vc, shape)],
    from,
    undefined,
    [kc, vc],
  );
}

/** A kernel's own buffer becomes the output; a view or an input is copied out. */
function outputBuffer(c: Lowering, key: string): number {
  const value = c.values.get(key)!;
  const b = c.buffers[value.view.buffer];
  const own =
    b.node === key && (b.role === "temp" || b.role === "output") && isWhole(value.view, b.shape);
  const id = own ? b.id : emit(c, key, { kind: "copy" }, [value.view], [value], "copy");
  c.buffers[id].role = "output";
  return id;
}

/** A load result read in a later phase is a const; a source result read by the step is state. */
function assignRoles(c: Lowering): void {
  const rank = (p: Phase) => PHASES.indexOf(p);
  for (const k of c.kernels)
    for (const v of k.inputs) {
      const b = c.buffers[v.buffer];
      if (b.role === "temp" && rank(k.phase) > rank(b.phase))
        b.role = b.phase === "load" ? "const" : "state";
    }
}

/** A symbol for the cached length that the graph does not already use. */
function freshSymbol(g: Graph, base: string): string {
  const used = new Set<string>();
  g.nodes.forEachNode((_k, n) => {
    const dims: Dim[] = [...n.type.shape];
    if (n.op === "range") dims.push(n.attrs.start);
    for (const d of dims) for (const s of dimSymbols(d)) used.add(s);
  });
  for (let i = 0; ; i++) {
    const s = i === 0 ? base : `${base}${i}`;
    if (!used.has(s)) return s;
  }
}
