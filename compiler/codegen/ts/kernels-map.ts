/** The map and gather families as TypeScript: one output element per innermost iteration, every
 *  operand read through its baked strides (pre-broadcast operands have stride 0 where they
 *  repeat), the output written row-major. Axes are merged where all strides chain, so a
 *  contiguous elementwise kernel is a single loop. Each body computes what the Program
 *  interpreter's (compiler/lower/kernels-map.ts) does, in float64, stored as float32. */
import type { Expr } from "../../ir/expr.ts";
import type { KernelBody, View } from "../../lower/program.ts";
import { symAdd, symMul, symOfDim, type SymInt } from "../../lower/sym.ts";
import { renderExpr, renderNumber } from "../expr-source.ts";
import { finish, type KernelFunction, type Param, type Scope } from "./kernel.ts";
import { atom, coalesce, index, literal, loops, rowMajor } from "./source.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

function output(s: Scope): { view: View; params: Param[] } {
  const b = s.program.buffers[s.kernel.output];
  const view: View = { buffer: b.id, offset: [], shape: b.shape, strides: rowMajor(b.shape) };
  return { view, params: s.operand("out", view) };
}

/** An elementwise walk over `shape`: `body(reads)` gets each view's element index. */
function elementwise(
  s: Scope,
  shape: View["shape"],
  views: readonly { readonly at: string; readonly strides: readonly SymInt[] }[],
  body: (at: readonly string[]) => string[],
): string[] {
  const nest = coalesce(
    shape,
    views.map((v) => v.strides),
  );
  const sizes = nest.sizes.map((x) => s.sym(x));
  const strides = nest.strides.map((vs) => vs.map((x) => s.sym(x)));
  return loops(sizes, (idx) => body(views.map((v, k) => index(v.at, idx, strides[k]))));
}

/** out[i] = expr(x0[i], x1[i], …) */
export function mapExpr(s: Scope, b: Body<"expr">, doc: readonly string[]): KernelFunction {
  const out = output(s);
  const ins = s.kernel.inputs.map((v, i) => ({ name: `x${i}`, view: v }));
  let rendered: ReturnType<typeof renderExpr> | undefined;
  const lines = elementwise(
    s,
    out.view.shape,
    [out.view, ...ins.map((x) => x.view)].map((v, k) => ({
      at: k === 0 ? "out_at" : `${ins[k - 1].name}_at`,
      strides: v.strides,
    })),
    ([o, ...at]) => {
      rendered = render(b.expr, (i) => `${ins[i].name}[${at[i]}]`);
      return [...rendered.temps, `out[${o}] = ${rendered.value};`];
    },
  );
  const params = [...ins.flatMap((x) => s.operand(x.name, x.view)), ...out.params];
  return finish(s, doc, params, lines, rendered?.helpers);
}

const render = (e: Expr, input: (i: number) => string) =>
  renderExpr(e, { target: "ts", input, temp: "t" });

/** out (row-major) ← x's elements in x's row-major order: a reshape no strides express. */
export function copy(s: Scope, doc: readonly string[]): KernelFunction {
  const out = output(s);
  const x = s.kernel.inputs[0];
  const lines = elementwise(
    s,
    x.shape,
    [
      { at: "out_at", strides: rowMajor(x.shape) },
      { at: "x_at", strides: x.strides },
    ],
    ([o, i]) => [`out[${o}] = x[${i}];`],
  );
  return finish(s, doc, [...s.operand("x", x), ...out.params], lines);
}

/** out = mask ≠ 0 ? value : x */
export function maskedFill(
  s: Scope,
  b: Body<"masked_fill">,
  doc: readonly string[],
): KernelFunction {
  const out = output(s);
  const [x, m] = s.kernel.inputs;
  const lines = elementwise(
    s,
    out.view.shape,
    [
      { at: "out_at", strides: out.view.strides },
      { at: "x_at", strides: x.strides },
      { at: "mask_at", strides: m.strides },
    ],
    ([o, i, j]) => [`out[${o}] = mask[${j}] !== 0 ? ${renderNumber(b.value, "ts")} : x[${i}];`],
  );
  return finish(s, doc, [...s.operand("x", x), ...s.operand("mask", m), ...out.params], lines);
}

/** −∞ where key j > query q + (Tk − Tq), over the last two axes. */
export function causalMask(s: Scope, doc: readonly string[]): KernelFunction {
  const out = output(s);
  const x = s.kernel.inputs[0];
  const r = out.view.shape.length;
  const outer = coalesce(out.view.shape.slice(0, r - 2), [
    out.view.strides.slice(0, r - 2),
    x.strides.slice(0, r - 2),
  ]);
  const [tq, tk] = [s.dim(out.view.shape[r - 2]), s.dim(out.view.shape[r - 1])];
  const os = out.view.strides.slice(r - 2).map((v) => s.sym(v));
  const xs = x.strides.slice(r - 2).map((v) => s.sym(v));
  const lines = [
    `const Tq = ${tq};`,
    `const Tk = ${tk};`,
    ...loops(
      outer.sizes.map((v) => s.sym(v)),
      (idx) => {
        const o = index(
          "out_at",
          idx,
          outer.strides[0].map((v) => s.sym(v)),
        );
        const i = index(
          "x_at",
          idx,
          outer.strides[1].map((v) => s.sym(v)),
        );
        return [
          `for (let q = 0; q < Tq; q++) {`,
          `  for (let j = 0; j < Tk; j++) {`,
          `    out[${index(o, ["q", "j"], os)}] = j > q + (Tk - Tq) ? -Infinity : x[${index(i, ["q", "j"], xs)}];`,
          `  }`,
          `}`,
        ];
      },
    ),
  ];
  return finish(s, doc, [...s.operand("x", x), ...out.params], lines);
}

/** out[i] = start + i */
export function range(s: Scope, b: Body<"range">, doc: readonly string[]): KernelFunction {
  const out = output(s);
  const start = s.dim(b.start);
  const n = s.dim(out.view.shape[0]);
  const lines = [
    `for (let i = 0; i < ${n}; i++) {`,
    `  out[out_at + i] = ${start === "0" ? "i" : `${start} + i`};`,
    `}`,
  ];
  return finish(s, doc, out.params, lines);
}

/** PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)), as the interpreter
 *  computes the angle. */
export function sinusoidal(
  s: Scope,
  b: Body<"sinusoidal">,
  doc: readonly string[],
): KernelFunction {
  const out = output(s);
  const pos = s.kernel.inputs[0];
  const n = s.dim(out.view.shape[0]);
  const step = s.sym(pos.strides[0]);
  const lines = [
    `for (let t = 0; t < ${n}; t++) {`,
    `  const p = pos[${index("pos_at", ["t"], [step])}];`,
    `  const row = out_at + t * ${b.dim};`,
    `  for (let i = 0; i < ${b.dim}; i += 2) {`,
    `    const angle = p * Math.exp((-i * Math.log(10000)) / ${b.dim});`,
    `    out[row + i] = Math.sin(angle);`,
    `    out[row + i + 1] = Math.cos(angle);`,
    `  }`,
    `}`,
  ];
  return finish(s, doc, [...s.operand("pos", pos), ...out.params], lines);
}

/** The parts one after another along the axis. */
export function concat(s: Scope, b: Body<"concat">, doc: readonly string[]): KernelFunction {
  const out = output(s);
  const st = out.view.strides;
  let at: SymInt = [];
  const lines: string[] = [];
  s.kernel.inputs.forEach((x, n) => {
    const base = s.sym(symMul(at, st[b.axis]));
    lines.push(
      `// part ${n}`,
      ...elementwise(
        s,
        x.shape,
        [
          { at: base === "0" ? "out_at" : `out_at + ${base}`, strides: st },
          { at: `x${n}_at`, strides: x.strides },
        ],
        ([o, i]) => [`out[${o}] = x${n}[${i}];`],
      ),
    );
    at = symAdd(at, symOfDim(x.shape[b.axis]));
  });
  const params = [...s.kernel.inputs.flatMap((x, n) => s.operand(`x${n}`, x)), ...out.params];
  return finish(s, doc, params, lines);
}

/** out[i…, r…] = table[ids[i…], r…]; an id outside the table is an error naming the node. */
export function gather(s: Scope, doc: readonly string[], where: string): KernelFunction {
  const out = output(s);
  const [table, ids] = s.kernel.inputs;
  const rows = s.dim(table.shape[0]);
  const rest = table.shape.slice(1);
  const rowLen = s.sym(
    rest.reduce<SymInt>((p, d) => symMul(p, symOfDim(d)), [{ coef: 1, syms: [] }]),
  );
  const copyRow = elementwise(
    s,
    rest,
    [
      { at: "o", strides: rowMajor(rest) },
      { at: "row", strides: table.strides.slice(1) },
    ],
    ([o, r]) => [`out[${o}] = table[${r}];`],
  );
  const lines = [
    `let o = out_at;`,
    ...elementwise(s, ids.shape, [{ at: "ids_at", strides: ids.strides }], ([i]) => [
      `const id = ids[${i}];`,
      `if (id < 0 || id >= ${rows})`,
      `  throw new RuntimeError("input", ${literal(where)}, "gather: index " + id + " is outside the table's " + ${atom(rows)} + " rows");`,
      `const row = ${index("table_at", ["id"], [s.sym(table.strides[0])])};`,
      ...copyRow,
      `o += ${rowLen};`,
    ]),
  ];
  return finish(
    s,
    doc,
    [...s.operand("table", table), ...s.operand("ids", ids), ...out.params],
    lines,
  );
}
