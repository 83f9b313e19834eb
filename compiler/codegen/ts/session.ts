/** The dispatch in the generated module, with the behaviour of the Program interpreter's session
 *  (compiler/lower/execute.ts). `load(weights)` runs the load phase once: params checked and
 *  taken, load kernels run, matmul weights packed; any number of sessions share its result,
 *  which holds only what sessions read (a param only a pack reads is taken inside the pack call
 *  and is not kept: once packed, only the caller can keep it alive).
 *  `createSession(loaded | weights)` makes a session with its own arena, KV cache and source
 *  state: `run` binds the dims from the inputs, runs the source phase (skipped when the source
 *  inputs equal the last ones it ran on), then the step phase with no cached positions; `step`
 *  takes only the step inputs, runs the step phase with P = the cached length and extends the
 *  KV cache.
 *
 *  Threads: `createSession(weights, threads)` (runtime/cpu/threads.ts) makes the arena and the
 *  f32 outputs and state in `threads.buffer` (shared memory), `load(weights, memory)` the packed
 *  weights and the params a packed matmul's epilogue reads, and every packed matmul goes
 *  through `threads.matmul`, which may split its columns across threads. Without, all runs here.
 *
 *  Storage rule: every buffer is a Float32Array (i32 values in an Int32Array).
 *  - Temps of the source and step phases live in one arena (an ArrayBuffer seen as Float32Array
 *    and Int32Array), at the offsets of the memory plan made for the program's capacity: every
 *    bound dim at its maximum (options.maxDims for a dim the graph does not bound) and P = 0. No
 *    temp's shape mentions P (the lowering keeps P in view offsets and cache kernels), and a
 *    plan for the largest binding holds for every smaller one, so one arena serves a prefill and
 *    every later step.
 *  - Params are the caller's arrays (checked, converted only when not Float32Array); load temps,
 *    consts and state with a static shape (the KV caches) are allocated once; outputs, and state
 *    with a symbolic shape, are allocated at their current size each time their phase runs (an
 *    output of the step phase is handed to the caller as is: it is never written again). */
import { fail } from "../../errors.ts";
import { formatShape, isSymbol, type Dim } from "../../ir/shape.ts";
import { planMemory, type MemoryPlan } from "../../lower/memory-plan.ts";
import {
  kernelsOf,
  type Buffer,
  type Phase,
  type Program,
  type View,
} from "../../lower/program.ts";
import { symAdd, symConst, symProduct, type SymInt } from "../../lower/sym.ts";
import type { Arg, KernelFunction } from "./kernel.ts";
import { arrayType } from "./kernel.ts";
import { indent, literal, renderSym, type DimVars } from "./source.ts";

/** Elements of alignment for arena offsets (64 bytes: a cache line). */
const ALIGN = 16;

export interface SessionParts {
  /** The statements of `load(weights)`'s body: it returns the params, the load phase's results and
   *  the packed weights, which any number of sessions can share. */
  readonly load: string[];
  /** The statements of `createSession`'s body. */
  readonly body: string[];
  /** Elements in the arena. */
  readonly arenaElements: number;
  /** The binding the arena was planned at. */
  readonly capacity: ReadonlyMap<string, number>;
}

/** The symbolic dims in their variable order: those of the inputs in signature order, then the
 *  cached length P, then any other. Independent of how the symbols are spelled. */
export function dimVars(p: Program): DimVars {
  const order: string[] = [];
  const add = (d: Dim) => {
    if (typeof d === "number") return;
    for (const t of d.split("+")) if (isSymbol(t) && !order.includes(t)) order.push(t);
  };
  for (const id of p.inputs) p.buffers[id].shape.forEach(add);
  if (p.kvCache.enabled) add(p.kvCache.past);
  for (const b of p.buffers) b.shape.forEach(add);
  for (const k of p.kernels) {
    for (const v of k.inputs) [...v.shape].forEach(add);
    if (k.body.kind === "range") add(k.body.start);
    if (k.body.kind === "attention_cached") add(k.body.past);
  }
  return new Map(order.map((s, i) => [s, `d${i}`]));
}

/** The binding the arena is planned at (the storage rule above). */
export function capacityOf(
  p: Program,
  maxDims: ReadonlyMap<string, number> = new Map(),
): Map<string, number> {
  const cap = new Map<string, number>();
  for (const b of p.bounds) cap.set(b.dim, b.max);
  for (const [d, n] of maxDims) cap.set(d, Math.min(n, cap.get(d) ?? Infinity));
  if (p.kvCache.enabled) cap.set(p.kvCache.past, 0);
  return cap;
}

const isPlanned = (b: Buffer) => b.role === "temp" && b.phase !== "load";
const isStatic = (b: Buffer) => b.shape.every((d) => typeof d === "number");

export function sessionBody(
  p: Program,
  fns: readonly KernelFunction[],
  dims: DimVars,
  maxDims?: ReadonlyMap<string, number>,
): SessionParts {
  const capacity = capacityOf(p, maxDims);
  const plan = arenaPlan(p, capacity);
  const sym = (a: SymInt) => renderSym(a, dims);
  const size = (b: Buffer) => sym(symProduct(b.shape));
  const array = (id: number): string => {
    const b = p.buffers[id];
    if (isPlanned(b)) return b.dtype === "i32" ? "arenaI" : "arenaF";
    return `b${id}`;
  };
  const at = (v: View): string => {
    const base = plan.offsets.get(v.buffer) ?? 0;
    return sym(symAdd(symConst(base), v.offset));
  };
  const argOf = (a: Arg): string => {
    switch (a.k) {
      case "data":
        return array(a.buffer);
      case "at":
        return at(a.view);
      case "expr":
        return a.source;
      case "packed":
        return packedName(a.kernel);
    }
  };
  const call = (f: Callable) => `${calleeOf(f)}(${f.params.map((x) => argOf(x.arg)).join(", ")});`;
  // A kernel that can share its columns goes to the threads when the session has them.
  const dispatch = (f: KernelFunction): string => {
    if (!f.columns) return call(f);
    const args = f.params.map((x) => argOf(x.arg));
    const macs = `${args[args.length - 1]} * ${f.columns.macsPerRow}`;
    const fn = calleeOf(f);
    return `if (threads) threads.matmul(${fn}, ${literal(fn)}, [${args.join(", ")}], ${f.columns.n}, ${f.columns.cols}, ${macs}); else ${call(f)}`;
  };
  const fnOf = new Map(fns.map((f, i) => [p.kernels[i].name, f]));
  const describe = (b: Buffer) => `// b${b.id}: ${b.role} ${b.dtype}${formatShape(b.shape)}`;

  const { load, loaded } = loadLines(p, fns, fnOf, argOf, size);

  // createSession: what load made, then storage outside the arena, the arena, the phases.
  const lines: string[] = [
    ...(loaded.length
      ? [
          `const { ${loaded.join(", ")} } = typeof weights === "function" ? load(weights, threads?.buffer) : weights;`,
        ]
      : []),
  ];
  lines.push(
    `// with threads, the memory they all see`,
    `const arena = threads ? threads.buffer(${plan.arenaElements} * 4) : new ArrayBuffer(${plan.arenaElements} * 4);`,
    `const arenaF = new Float32Array(arena);`,
    `const arenaI = new Int32Array(arena);`,
    `const f32 = (n: number): Float32Array => (threads ? new Float32Array(threads.buffer(n * 4)) : new Float32Array(n));`,
  );
  const alloc = (b: Buffer) =>
    b.dtype === "f32" ? `f32(${size(b)})` : `new ${arrayType(b.dtype)}(${size(b)})`;
  for (const b of p.buffers) {
    if (b.phase === "load" || isPlanned(b)) continue;
    const type = arrayType(b.dtype);
    if (b.role === "state" && isStatic(b))
      lines.push(`const b${b.id} = ${alloc(b)}; ${describe(b)}`);
    else lines.push(`let b${b.id}: ${type} = new ${type}(0); ${describe(b)}`);
  }
  lines.push(
    ...[...dims.values()].map((v) => `let ${v} = 0;`),
    `let cached = 0; // positions in the KV cache`,
    `let source: Tensor[] | undefined; // the source inputs the source phase last ran on`,
  );
  // The phases.
  const phase = (ph: Phase): string[] =>
    kernelsOf(p, ph).flatMap((k) => {
      const out = p.buffers[k.output];
      const fresh =
        out.role === "output" || (out.role === "state" && !isStatic(out))
          ? [`b${out.id} = ${alloc(out)};`]
          : [];
      return [...fresh, dispatch(fnOf.get(k.name)!)];
    });
  const source = phase("source");
  if (source.length) lines.push(`function sourcePhase(): void {`, ...indent(source), `}`);
  lines.push(
    `function stepPhase(): void {`,
    ...indent(phase("step")),
    `}`,
    `function results(): Output[] {`,
    `  return [`,
    ...p.outputs.map((id) => {
      const b = p.buffers[id];
      const data = b.phase === "step" ? `b${id}` : `b${id}.slice()`;
      return `    { shape: [${b.shape.map((d) => sym(symProduct([d]))).join(", ")}], data: ${data} },`;
    }),
    `  ];`,
    `}`,
  );
  lines.push(...entryPoints(p, dims, capacity));
  return { load, body: lines, arenaElements: plan.arenaElements, capacity };
}

/** load(weights): params, then the load phase, then packed weights; `loaded` names what it
 *  returns. It returns only what the sessions use; a param only a pack reads is taken inside its
 *  pack call, so that nothing here holds it once packed (a caller that lets go of it too frees
 *  it weight by weight). */
function loadLines(
  p: Program,
  fns: readonly KernelFunction[],
  fnOf: ReadonlyMap<string, KernelFunction>,
  argOf: (a: Arg) => string,
  size: (b: Buffer) => string,
): { load: string[]; loaded: string[] } {
  const dataOf = (params: readonly { arg: Arg }[]) =>
    params.flatMap((x) => (x.arg.k === "data" ? [x.arg.buffer] : []));
  const usedBy = (ph: Phase) => kernelsOf(p, ph).flatMap((k) => dataOf(fnOf.get(k.name)!.params));
  const sessionUses = new Set([...usedBy("source"), ...usedBy("step"), ...p.outputs]);
  const loadUses = new Set(usedBy("load"));
  const packUses = new Map<number, number>();
  for (const f of fns)
    for (const id of f.pack ? dataOf(f.pack.params) : [])
      packUses.set(id, (packUses.get(id) ?? 0) + 1);
  const call = (f: Callable, arg = argOf) =>
    `${calleeOf(f)}(${f.params.map((x) => arg(x.arg)).join(", ")})`;
  // Params a kernel that threads share reads (its epilogue's operands) go into shared memory.
  const threaded = new Set(fns.flatMap((f) => (f.columns ? dataOf(f.params) : [])));
  const takeParam = (b: Buffer) =>
    b.dtype === "i32"
      ? `weightI32(weights, ${literal(b.name ?? b.node)}, [${b.shape.join(", ")}])`
      : `weight(weights, ${literal(b.name ?? b.node)}, [${b.shape.join(", ")}]${threaded.has(b.id) ? ", memory" : ""})`;
  const inPack = new Map<number, string>(); // a param taken inside its one pack call
  const load: string[] = [];
  const loaded: string[] = [];
  for (const b of p.buffers) {
    if (b.role !== "param") continue;
    if (sessionUses.has(b.id) || loadUses.has(b.id)) {
      load.push(`const b${b.id} = ${takeParam(b)};`);
      if (sessionUses.has(b.id)) loaded.push(`b${b.id}`);
    } else if (packUses.get(b.id) === 1) inPack.set(b.id, takeParam(b));
    else if (packUses.has(b.id)) load.push(`const b${b.id} = ${takeParam(b)};`);
    else load.push(`${takeParam(b)}; // checked, not used`);
  }
  for (const b of p.buffers)
    if (b.phase === "load" && b.role !== "param") {
      load.push(
        b.dtype === "f32"
          ? `const b${b.id} = memory ? new Float32Array(memory(${size(b)} * 4)) : new Float32Array(${size(b)}); // ${b.role}`
          : `const b${b.id} = new ${arrayType(b.dtype)}(${size(b)}); // ${b.role}`,
      );
      if (sessionUses.has(b.id)) loaded.push(`b${b.id}`);
    }
  for (const k of kernelsOf(p, "load")) load.push(`${call(fnOf.get(k.name)!)};`);
  const packArg = (a: Arg) => (a.k === "data" && inPack.get(a.buffer)) || argOf(a);
  for (const f of fns)
    if (f.pack) {
      load.push(`const ${packedName(f.name)} = ${call(f.pack, packArg)};`);
      loaded.push(packedName(f.name));
    }
  load.push(`return { ${loaded.join(", ")} };`);
  return { load, loaded };
}

/** A kernel or pack function as a call: what it is named, what it calls (its own code, or the
 *  code another kernel shares with it) and the arguments of its parameters. */
type Callable = Pick<KernelFunction, "name" | "callee"> & { params: readonly { arg: Arg }[] };

const calleeOf = (f: Callable): string => f.callee ?? f.name;

export const packedName = (kernel: string): string => `w${/^k(\d+)/.exec(kernel)?.[1] ?? kernel}`;

function arenaPlan(
  p: Program,
  capacity: ReadonlyMap<string, number>,
): { offsets: ReadonlyMap<number, number>; arenaElements: number } {
  for (const b of p.buffers) {
    if (!isPlanned(b)) continue;
    for (const d of b.shape)
      for (const s of typeof d === "string" ? d.split("+").filter(isSymbol) : []) {
        if (p.kvCache.enabled && s === p.kvCache.past)
          throw new Error(`b${b.id} (%${b.node}): a temp's shape mentions the cached length`);
        if (!capacity.has(s))
          fail(
            "usage",
            `dim ${s}`,
            "has no bound to size the arena with: give it a maximum (maxDims, --seq-len)",
          );
      }
  }
  const plan: MemoryPlan = planMemory(p, capacity, { align: ALIGN, bytes: () => 1 });
  return { offsets: plan.offsets, arenaElements: plan.arenaBytes };
}

/** Binding the dims from inputs: the first bare occurrence of a symbol binds it (checked against
 *  its bound), every other dim is checked against the binding. Validation happens before any
 *  state changes. */
function bindLines(
  p: Program,
  ids: readonly number[],
  names: readonly string[],
  dims: DimVars,
  capacity: ReadonlyMap<string, number>,
  preBound: ReadonlySet<string>,
): { check: string[]; commit: string[]; local: ReadonlyMap<string, string> } {
  const check: string[] = [];
  const commit: string[] = [];
  const local = new Map<string, string>(); // symbol → the local holding its new value
  const value = (s: string) => local.get(s) ?? (preBound.has(s) ? dims.get(s)! : undefined);
  ids.forEach((id, n) => {
    const b = p.buffers[id];
    const x = names[n];
    const where = literal(`input "${b.name ?? b.node}"`);
    const want = literal(`expects ${b.dtype}${formatShape(b.shape)}, got [`);
    const got = `${want} + ${x}.shape.join(",") + "]"`;
    check.push(
      `if (${x}.shape.length !== ${b.shape.length}) throw new RuntimeError("input", ${where}, ${got});`,
    );
    b.shape.forEach((d, i) => {
      if (typeof d === "string" && isSymbol(d) && value(d) === undefined) {
        const v = `n${local.size}`;
        local.set(d, v);
        check.push(`const ${v} = ${x}.shape[${i}];`);
        const bound = p.bounds.find((q) => q.dim === d);
        const max = capacity.get(d);
        if (max !== undefined) {
          const why = bound && bound.max === max ? bound.why : "the compiled capacity";
          const msg = `${literal(`length `)} + ${v} + ${literal(` exceeds ${why} (${d} ≤ ${max})`)}`;
          check.push(`if (${v} > ${max}) throw new RuntimeError("input", ${where}, ${msg});`);
        }
        return;
      }
      const terms = typeof d === "number" ? [] : d.split("+").filter(isSymbol);
      const unbound = terms.filter((s) => value(s) === undefined);
      if (unbound.length > 0) {
        check.push(
          `throw new RuntimeError("input", ${where}, ${literal(`dim ${d} cannot be bound`)});`,
        );
        return;
      }
      const local2: DimVars = new Map(terms.map((s) => [s, value(s)!]));
      const expect = renderSym(symProduct([d]), local2);
      check.push(
        `if (${x}.shape[${i}] !== ${expect}) throw new RuntimeError("input", ${where}, ${got} + ${literal(` (dim ${i})`)});`,
      );
    });
  });
  for (const [s, v] of local) commit.push(`${dims.get(s)} = ${v};`);
  return { check, commit, local };
}

function feedLine(p: Program, id: number, x: string, dims: DimVars): string {
  const b = p.buffers[id];
  const where = literal(`input "${b.name ?? b.node}"`);
  const n = renderSym(symProduct(b.shape), dims);
  return `b${id} = ${b.dtype === "i32" ? "feedI32" : "feedF32"}(${x}, ${n}, ${where});`;
}

function entryPoints(p: Program, dims: DimVars, capacity: ReadonlyMap<string, number>): string[] {
  const kv = p.kvCache;
  const stepIds = p.inputs.filter((id) => p.buffers[id].phase === "step");
  const sourceIds = p.inputs.filter((id) => p.buffers[id].phase !== "step");
  const where = literal(`@${p.name}`);
  const xs = p.inputs.map((_, i) => `x${i}`);
  const nameOf = new Map(p.inputs.map((id, i) => [id, xs[i]]));
  const all = bindLines(p, p.inputs, xs, dims, capacity, new Set());
  const sourceSyms = new Set(
    sourceIds.flatMap((id) =>
      p.buffers[id].shape.flatMap((d) => (typeof d === "string" ? d.split("+") : [])),
    ),
  );
  const stepXs = stepIds.map((id) => nameOf.get(id)!);
  const some = bindLines(p, stepIds, stepXs, dims, capacity, sourceSyms);
  const expects = (ids: readonly number[]) =>
    ids
      .map(
        (id) =>
          `${p.buffers[id].name ?? p.buffers[id].node} ${p.buffers[id].dtype}${formatShape(p.buffers[id].shape)}`,
      )
      .join(", ");
  const arity = (ids: readonly number[], fn: string) =>
    `if (inputs.length !== ${ids.length}) throw new RuntimeError("input", ${where}, ${literal(`${fn} takes ${ids.length} input(s) (${expects(ids)}), got `)} + inputs.length);`;
  const past = kv.enabled ? dims.get(kv.past) : undefined;
  const seq = p.seqDim !== undefined ? dims.get(p.seqDim) : undefined;
  const run = [
    `run(inputs: readonly Tensor[]): Output[] {`,
    `  ${arity(p.inputs, "run")}`,
    ...(xs.length ? [`  const [${xs.join(", ")}] = inputs;`] : []),
    ...indent(all.check),
    ...indent(all.commit),
    ...(past ? [`  ${past} = 0;`] : []),
    ...(sourceIds.length
      ? [
          `  const same = source !== undefined && ${sourceIds.map((id, i) => `sameTensor(source[${i}], ${nameOf.get(id)})`).join(" && ")};`,
          `  if (!same) {`,
          `    source = undefined; // until the source phase has finished`,
          ...sourceIds.map((id) => `    ${feedLine(p, id, nameOf.get(id)!, dims)}`),
          ...(kernelsOf(p, "source").length ? [`    sourcePhase();`] : []),
          `    source = [${sourceIds.map((id) => `copyTensor(${nameOf.get(id)})`).join(", ")}];`,
          `  }`,
        ]
      : kernelsOf(p, "source").length
        ? [`  sourcePhase();`]
        : []),
    ...stepIds.map((id) => `  ${feedLine(p, id, nameOf.get(id)!, dims)}`),
    `  stepPhase();`,
    ...(kv.enabled && seq ? [`  cached = ${seq};`] : []),
    `  return results();`,
    `},`,
  ];
  const step = kv.enabled
    ? [
        `step(inputs: readonly Tensor[]): Output[] {`,
        ...(sourceIds.length
          ? [
              `  if (source === undefined) throw new RuntimeError("input", ${where}, "step before run: the source has not been fed");`,
            ]
          : []),
        `  ${arity(stepIds, "step")}`,
        ...(stepXs.length ? [`  const [${stepXs.join(", ")}] = inputs;`] : []),
        ...indent(some.check),
        ...(kv.capacity !== undefined && p.seqDim !== undefined && some.local.has(p.seqDim)
          ? [
              `  if (cached + ${some.local.get(p.seqDim)} > ${kv.capacity})`,
              `    throw new RuntimeError("input", ${literal(`input "${p.buffers[stepIds[0]].name ?? ""}"`)}, cached + ${literal(" cached + ")} + ${some.local.get(p.seqDim)} + ${literal(` new positions exceed the KV cache's ${kv.capacity} rows`)});`,
            ]
          : []),
        ...indent(some.commit),
        `  ${past} = cached;`,
        ...stepIds.map((id) => `  ${feedLine(p, id, nameOf.get(id)!, dims)}`),
        `  stepPhase();`,
        ...(seq ? [`  cached += ${seq};`] : []),
        `  return results();`,
        `},`,
      ]
    : [
        `step(_inputs: readonly Tensor[]): Output[] {`,
        `  throw new RuntimeError("input", ${where}, ${literal(`no KV cache: ${kv.reason}`)});`,
        `},`,
      ];
  return [
    `return {`,
    `  get cachedLength(): number {`,
    `    return cached;`,
    `  },`,
    ...indent(run),
    ...indent(step),
    `};`,
  ];
}
