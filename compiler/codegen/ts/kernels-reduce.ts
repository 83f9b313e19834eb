/** The row_reduction family as TypeScript: one row at a time (every index of the other axes),
 *  the row read through its stride into a float64 scratch row, as the Program interpreter does
 *  (compiler/lower/kernels-reduce.ts).
 *  softmax: scale, hide masked elements (−∞, never reading what they hold into the sum),
 *  subtract the row max; a row with nothing visible gives zeros, never NaN.
 *  layer_norm: the prologue expression per element, then mean and variance in two passes. */
import type { KernelBody, View } from "../../lower/program.ts";
import type { SymInt } from "../../lower/sym.ts";
import { renderExpr, renderNumber } from "../expr-source.ts";
import { finish, type KernelFunction, type Param, type Scope } from "./kernel.ts";
import { coalesce, index, loops, plus, rowMajor } from "./source.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

function outputView(s: Scope): View {
  const b = s.program.buffers[s.kernel.output];
  return { buffer: b.id, offset: [], shape: b.shape, strides: rowMajor(b.shape) };
}

const without = <T>(xs: readonly T[], axis: number): T[] => xs.filter((_, i) => i !== axis);

/** Loops over every axis but `axis`; `body(at)` gets each view's offset of the row's start. */
function rows(
  s: Scope,
  shape: View["shape"],
  axis: number,
  views: readonly { readonly at: string; readonly strides: readonly SymInt[] }[],
  body: (at: readonly string[]) => string[],
): string[] {
  const nest = coalesce(
    without(shape, axis),
    views.map((v) => without(v.strides, axis)),
  );
  const strides = nest.strides.map((vs) => vs.map((x) => s.sym(x)));
  return loops(
    nest.sizes.map((x) => s.sym(x)),
    (idx) => body(views.map((v, k) => index(v.at, idx, strides[k]))),
  );
}

export function softmax(s: Scope, b: Body<"softmax">, doc: readonly string[]): KernelFunction {
  const out = outputView(s);
  const [x, mask] = s.kernel.inputs;
  const r = out.shape.length;
  const len = s.dim(out.shape[b.axis]);
  const step = (v: View) => s.sym(v.strides[b.axis]);
  const [so, sx, sm] = [out, x, ...(b.masked ? [mask] : [])].map(step);
  const scale = b.scale === 1 ? "" : ` * ${renderNumber(b.scale, "ts")}`;
  const hidden = [
    ...(b.causal ? ["k > q + (n - Tq)"] : []),
    ...(b.masked ? [`mask[${plus("m", "k", sm)}] !== 0`] : []),
  ];
  const row = (o: string, xi: string, m: string): string[] => [
    ...(b.masked ? [`const m = ${m};`] : []),
    `let max = -Infinity;`,
    `for (let k = 0; k < n; k++) {`,
    `  const v = ${hidden.length ? `${hidden.join(" || ")} ? -Infinity : ` : ""}x[${plus(xi, "k", sx)}]${scale};`,
    `  row[k] = v;`,
    `  max = Math.max(max, v);`,
    `}`,
    `if (max === -Infinity) {`,
    `  for (let k = 0; k < n; k++) out[${plus(o, "k", so)}] = 0;`,
    `} else {`,
    `  let sum = 0;`,
    `  for (let k = 0; k < n; k++) {`,
    `    const e = Math.exp(row[k] - max);`,
    `    row[k] = e;`,
    `    sum += e;`,
    `  }`,
    `  for (let k = 0; k < n; k++) out[${plus(o, "k", so)}] = row[k] / sum;`,
    `}`,
  ];
  const views = [out, x, ...(b.masked ? [mask] : [])].map((v, k) => ({
    at: ["out_at", "x_at", "mask_at"][k],
    strides: v.strides,
  }));
  let lines: string[];
  if (b.causal) {
    // The query index is the axis before the row's (the row is the last axis).
    const tq = s.dim(out.shape[r - 2]);
    const qs = views.map((v) => s.sym(v.strides[r - 2]));
    const outer = rows(
      s,
      out.shape.slice(0, r - 1),
      r - 2,
      views.map((v) => ({ at: v.at, strides: v.strides.slice(0, r - 1) })),
      ([o, xi, m]) => [
        `for (let q = 0; q < Tq; q++) {`,
        ...row(plus(o, "q", qs[0]), plus(xi, "q", qs[1]), m ? plus(m, "q", qs[2]) : "").map(
          (l) => `  ${l}`,
        ),
        `}`,
      ],
    );
    lines = [`const Tq = ${tq};`, ...outer];
  } else lines = rows(s, out.shape, b.axis, views, ([o, xi, m]) => row(o, xi, m ?? ""));
  const params = [
    ...s.operand("x", x),
    ...(b.masked ? s.operand("mask", mask) : []),
    ...s.operand("out", out),
  ];
  return finish(s, doc, params, [
    `const n = ${len};`,
    `const row = new Float64Array(n);`,
    ...lines,
  ]);
}

/** (γ, β, xs…): layer_norm(expr(xs)) over the last axis. */
export function layerNorm(s: Scope, b: Body<"layer_norm">, doc: readonly string[]): KernelFunction {
  const out = outputView(s);
  const [g, beta, ...xs] = s.kernel.inputs;
  const r = out.shape.length;
  const c = s.dim(out.shape[r - 1]);
  const names = xs.map((_, i) => `x${i}`);
  const views = [out, ...xs].map((v, k) => ({
    at: k === 0 ? "out_at" : `${names[k - 1]}_at`,
    strides: v.strides,
  }));
  const steps = [out, ...xs].map((v) => s.sym(v.strides[r - 1]));
  const [gs, bs] = [g, beta].map((v) => s.sym(v.strides[0]));
  let helpers: KernelFunction["helpers"] = new Set();
  const lines = rows(s, out.shape, r - 1, views, ([o, ...at]) => {
    const e = renderExpr(b.expr, {
      target: "ts",
      input: (i) => `${names[i]}[${plus(`a${i}`, "k", steps[i + 1])}]`,
      temp: "t",
    });
    helpers = e.helpers;
    return [
      `const o = ${o};`,
      ...at.map((a, i) => `const a${i} = ${a};`),
      `let mean = 0;`,
      `for (let k = 0; k < c; k++) {`,
      ...e.temps.map((t) => `  ${t}`),
      `  const v = ${e.value};`,
      `  row[k] = v;`,
      `  mean += v;`,
      `}`,
      `mean /= c;`,
      `let variance = 0;`,
      `for (let k = 0; k < c; k++) variance += (row[k] - mean) ** 2;`,
      `const inv = 1 / Math.sqrt(variance / c + ${renderNumber(b.eps, "ts")});`,
      `for (let k = 0; k < c; k++)`,
      `  out[${plus("o", "k", steps[0])}] = (row[k] - mean) * inv * gamma[${plus("gamma_at", "k", gs)}] + beta[${plus("beta_at", "k", bs)}];`,
    ];
  });
  const params = [
    ...s.operand("gamma", g),
    ...s.operand("beta", beta),
    ...xs.flatMap((v, i) => s.operand(names[i], v)),
    ...s.operand("out", out),
  ];
  return finish(
    s,
    doc,
    params,
    [`const c = ${c};`, `const row = new Float64Array(c);`, ...lines],
    helpers,
  );
}

/** Sum (or mean) along the axis, which the result keeps with size 1. */
export function reduce(s: Scope, b: Body<"reduce">, doc: readonly string[]): KernelFunction {
  const out = outputView(s);
  const x = s.kernel.inputs[0];
  const len = s.dim(x.shape[b.axis]);
  const sa = s.sym(x.strides[b.axis]);
  const nest = coalesce(out.shape, [out.strides, x.strides]);
  const strides = nest.strides.map((vs) => vs.map((v) => s.sym(v)));
  const lines = loops(
    nest.sizes.map((v) => s.sym(v)),
    (idx) => [
      `const i = ${index("x_at", idx, strides[1])};`,
      `let acc = 0;`,
      `for (let k = 0; k < n; k++) acc += x[${plus("i", "k", sa)}];`,
      `out[${index("out_at", idx, strides[0])}] = ${b.mean ? "acc / n" : "acc"};`,
    ],
  );
  return finish(
    s,
    doc,
    [...s.operand("x", x), ...s.operand("out", out)],
    [`const n = ${len};`, ...lines],
  );
}
