/** The matmul family as TypeScript. Two templates:
 *  - packed (codegen/ts/matmul.ts): a 2-D matmul whose b is fixed after load (a param, a const,
 *    or a view of one) with static K and N — every linear layer. b is packed once at load into
 *    column panels; the kernel is register-blocked, float64 accumulators, epilogue fused.
 *  - strided: anything else (batched products, b computed at run time: attention written out
 *    with matmuls). Per output element, the dot product over K in order, then the epilogue, as
 *    the Program interpreter computes it (compiler/lower/kernels-matmul.ts). */
import type { KernelBody, View } from "../../lower/program.ts";
import { symNumber, symOfDim, type SymInt } from "../../lower/sym.ts";
import { renderExpr } from "../expr-source.ts";
import { DEFAULT_SCHEDULE, renderMatmul, renderPackB, type OperandSpec } from "./matmul.ts";
import { functionSource, type KernelFunction, type Param, type Scope } from "./kernel.ts";
import { coalesce, index, loops, plus, renderSym, rowMajor, type DimVars } from "./source.ts";

type Body = Extract<KernelBody, { kind: "matmul" }>;

function outputView(s: Scope): View {
  const b = s.program.buffers[s.kernel.output];
  return { buffer: b.id, offset: [], shape: b.shape, strides: rowMajor(b.shape) };
}

/** b can be packed at load: its buffer is complete once the load phase has run, and K, N and its
 *  strides are numbers. */
export function isPackable(s: Scope): boolean {
  const [a, b] = s.kernel.inputs;
  const out = s.program.buffers[s.kernel.output];
  return (
    out.shape.length === 2 &&
    s.program.buffers[b.buffer].phase === "load" &&
    [...b.shape, ...a.shape.slice(1)].every((d) => typeof d === "number") &&
    [...b.strides, b.offset].every((x) => symNumber(x) !== undefined)
  );
}

export function matmul(
  s: Scope,
  body: Body,
  doc: readonly string[],
  dims: DimVars,
): KernelFunction {
  return isPackable(s) ? packed(s, body, doc, dims) : strided(s, body, doc);
}

/** The packed template: its parameters in renderMatmul's order, checked against its source. */
function packed(s: Scope, body: Body, doc: readonly string[], dims: DimVars): KernelFunction {
  const [a, b, ...extras] = s.kernel.inputs;
  const N = b.shape[body.transposeB ? 0 : 1] as number;
  const K = a.shape[1] as number;
  const stride = (x: SymInt) => symNumber(x);
  const operand = (name: string, v: View): OperandSpec => ({
    name,
    rowStride: stride(v.strides[0]),
    colStride: stride(v.strides[1]),
  });
  const spec = {
    name: s.kernel.name,
    irLine: doc[0],
    K,
    N,
    transposeB: body.transposeB,
    expr: body.expr,
    a: operand("a", a),
    b: operand("w", b),
    extras: extras.map((v, i) => operand(`e${i}`, v)),
    out: { name: "out" },
  };
  const fn = renderMatmul(spec);
  const pack = renderPackB(spec, fn.name);
  // Run-time strides are rendered over the session's dim variables.
  const runtime = (name: string, v: View): Param[] =>
    [0, 1].flatMap((ax): Param[] =>
      stride(v.strides[ax]) === undefined
        ? [
            {
              name: `${name}_${ax === 0 ? "row" : "col"}`,
              type: "number",
              arg: { k: "expr", source: renderSym(v.strides[ax], dims) },
            },
          ]
        : [],
    );
  const operandParams = (name: string, v: View): Param[] => [
    { name, type: "Float32Array", arg: { k: "data", buffer: v.buffer } },
    { name: `${name}_off`, type: "number", arg: { k: "at", view: v } },
    ...runtime(name, v),
  ];
  const params: Param[] = [
    ...operandParams("a", a),
    { name: "w", type: "Float32Array", arg: { k: "packed", kernel: fn.name } },
    ...extras.flatMap((v, i) => operandParams(`e${i}`, v)),
    { name: "out", type: "Float32Array", arg: { k: "data", buffer: s.kernel.output } },
    { name: "out_off", type: "number", arg: { k: "at", view: outputView(s) } },
    {
      name: "M",
      type: "number",
      arg: {
        k: "expr",
        source: renderSym(symOfDim(s.program.buffers[s.kernel.output].shape[0]), dims),
      },
    },
  ];
  checkSignature(fn.source, fn.name, params);
  const packParams: Param[] = [
    { name: "w", type: "Float32Array", arg: { k: "data", buffer: b.buffer } },
    { name: "w_off", type: "number", arg: { k: "at", view: b } },
    { name: "memory", type: "Memory", arg: { k: "expr", source: "memory" } },
  ];
  checkSignature(pack.source, pack.name, packParams);
  // The template's header holds one line: the IR line. The rest of the kernel's doc goes above it.
  const more = doc.slice(1).map((l) => `// ${l}`);
  return {
    name: fn.name,
    source: [...more, fn.source].join("\n"),
    params,
    helpers: fn.helpers,
    pack: { name: pack.name, source: pack.source, params: packParams },
    columns: { n: N, cols: DEFAULT_SCHEDULE.cols, macsPerRow: K * N },
  };
}

/** The generated function's parameter names must be the ones the dispatch passes, in order; any
 *  after them must be optional (the column range). */
function checkSignature(source: string, name: string, params: readonly Param[]): void {
  const m = new RegExp(`function ${name}\\(([^)]*)\\)`).exec(source);
  const all = m ? m[1].split(",").map((p) => p.trim()) : [];
  const got = all.slice(0, params.length).map((p) => p.split(/[:?=]/)[0].trim());
  const rest = all.slice(params.length);
  const want = params.map((p) => p.name);
  if (got.join(",") !== want.join(",") || !rest.every((p) => /^\w+\s*(\?|=)/.test(p)))
    throw new Error(`matmul template ${name}: parameters (${got}) are not the expected (${want})`);
}

/** The strided template: batch axes, then every (i, j), the dot product over K, the epilogue. */
function strided(s: Scope, body: Body, doc: readonly string[]): KernelFunction {
  const out = outputView(s);
  const [a, b, ...extras] = s.kernel.inputs;
  const r = out.shape.length;
  const batch = out.shape.slice(0, r - 2);
  const views = [out, a, b, ...extras];
  const names = ["out", "a", "b", ...extras.map((_, i) => `e${i}`)];
  const nest = coalesce(
    batch,
    views.map((v) => v.strides.slice(0, r - 2)),
  );
  const bStrides = nest.strides.map((vs) => vs.map((x) => s.sym(x)));
  const st = (v: View, ax: number) => s.sym(v.strides[ax]);
  const [am, ak] = [st(a, r - 2), st(a, r - 1)];
  const [bk, bn] = body.transposeB ? [st(b, r - 1), st(b, r - 2)] : [st(b, r - 2), st(b, r - 1)];
  const [om, on] = [st(out, r - 2), st(out, r - 1)];
  const e = renderExpr(body.expr, {
    target: "ts",
    acc: "acc",
    input: (i) =>
      `e${i}[${plus(plus(`${names[i + 3]}0`, "i", st(extras[i], r - 2)), "j", st(extras[i], r - 1))}]`,
    temp: "t",
  });
  const lines = [
    `const M = ${s.dim(out.shape[r - 2])};`,
    `const N = ${s.dim(out.shape[r - 1])};`,
    `const K = ${s.dim(a.shape[r - 1])};`,
    ...loops(
      nest.sizes.map((x) => s.sym(x)),
      (idx) => [
        ...names.map((n, k) => `const ${n}0 = ${index(`${n}_at`, idx, bStrides[k])};`),
        `for (let i = 0; i < M; i++) {`,
        `  const ai = ${plus("a0", "i", am)};`,
        `  for (let j = 0; j < N; j++) {`,
        `    const bj = ${plus("b0", "j", bn)};`,
        `    let acc = 0;`,
        `    for (let k = 0; k < K; k++) acc += a[${plus("ai", "k", ak)}] * b[${plus("bj", "k", bk)}];`,
        ...e.temps.map((t) => `    ${t}`),
        `    out[${plus(plus("out0", "i", om), "j", on)}] = ${e.value};`,
        `  }`,
        `}`,
      ],
    ),
  ];
  const params = [
    ...s.operand("a", a),
    ...s.operand("b", b),
    ...extras.flatMap((v, i) => s.operand(`e${i}`, v)),
    ...s.operand("out", out),
  ];
  const all = [...params, ...s.dimParams()];
  return {
    name: s.kernel.name,
    params: all,
    helpers: e.helpers,
    source: functionSource(s.kernel.name, doc, all, lines),
  };
}
