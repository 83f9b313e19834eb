/** The matmul family as TypeScript source: out[M, N] = expr(acc = a[M, K] · b[K, N], extras…),
 *  K, N, the epilogue and the strides that are known baked in, M a run-time argument.
 *
 *  - b is a weight (or any operand fixed for many calls): `renderPackB` makes the function that
 *    packs it once, at load, into panels of `cols` columns (the schedule's), each contiguous
 *    along K (panel p, row k, column c at (p·K + k)·cols + c), the last zero-padded to full width.
 *    transposeB only changes how the packing reads b; the kernel never sees it.
 *  - The kernel walks blocks of `rows` × `cols` outputs. With `packA` (the default), a block's
 *    rows of a are first copied to a float64 scratch, interleaved along K. Each block's
 *    accumulators are locals (`c00` …), summed over K in order — each step reads `rows` values of
 *    a and one contiguous group of `cols` packed b values — then stored into `tile` and finished
 *    by `finish`: the epilogue on each float64 accumulator, then the float32 store. Rows past the
 *    last full block go through a one-row kernel; the zero-padded last panel makes every panel
 *    full-width, and `finish` stores only columns < N.
 *  - Accumulation is in float64 (JavaScript numbers; a float32 product is exact in it), k in
 *    order from 0, so the sum is the float64 reference's own, and the result differs from the
 *    reference on the same inputs only by the final float32 rounding.
 *
 *  Identifiers come from the IR names passed in, through names.ts; the header comment carries
 *  the IR line, escaped. */
import { formatExpr, type Expr } from "../../ir/expr.ts";
import { renderExpr } from "../expr-source.ts";
import type { Helper } from "../helpers.ts";
import { commentText, Identifiers } from "../names.ts";

/** An operand read through strides: a number is baked into the source, undefined makes it a
 *  run-time argument `<name>_row` / `<name>_col`. The offset is always an argument, `<name>_off`. */
export interface OperandSpec {
  /** The IR value's name (made into identifiers; shown in comments). */
  readonly name: string;
  readonly rowStride?: number;
  readonly colStride?: number;
}

/** How the kernel walks the output: blocks of `rows` × `cols` accumulators, and whether a
 *  block's rows of a are first copied to float64 (`packA`). */
export interface Schedule {
  readonly rows: number;
  readonly cols: number;
  readonly packA: boolean;
}

/** The schedule the benchmark (bench/matmul-kernel.ts) found fastest here: at or near the top
 *  at every GPT-2 shape, and its one-row kernel (1×8, the panel width) is the fastest for M = 1. */
export const DEFAULT_SCHEDULE: Schedule = { rows: 4, cols: 8, packA: true };

export interface MatmulSpec {
  /** The function's name (the kernel's, e.g. `k3_matmul_epilogue`). */
  readonly name: string;
  /** The IR line the kernel implements, for its header comment. */
  readonly irLine: string;
  readonly K: number;
  readonly N: number;
  readonly transposeB: boolean;
  /** The epilogue: `acc` is the dot product, `$i` reads extras[i] at the same (row, column). */
  readonly expr: Expr;
  /** a [M, K]; contiguous rows are `colStride: 1` (baked: the K loop's reads then need no
   *  multiplication). */
  readonly a: OperandSpec;
  /** b as stored: [K, N], or [N, K] when transposeB; strides default to contiguous rows. */
  readonly b: OperandSpec;
  /** The epilogue's operands, pre-broadcast to [M, N] (stride 0 on broadcast axes). */
  readonly extras: readonly OperandSpec[];
  /** The output, written [M, N] row-major from `<name>_off`. */
  readonly out: { readonly name: string };
  readonly schedule?: Schedule;
}

export interface GeneratedFunction {
  /** The function's identifier. */
  readonly name: string;
  /** The function declaration (exported), with its header comment. */
  readonly source: string;
  /** Helpers it calls: emit them once per module (helpers.ts `renderHelpers`). */
  readonly helpers: ReadonlySet<Helper>;
}

/** Elements in the packed b: whole panels of `cols` columns. */
export function packedLength(K: number, N: number, cols = DEFAULT_SCHEDULE.cols): number {
  return Math.ceil(N / cols) * K * cols;
}

/** The kernel's own locals; IR-derived names that collide with them get a suffix. */
function fixedLocals(block: Schedule): string[] {
  const out = ["K", "N", "M", "i", "j", "k", "r", "c", "i0", "j0", "row", "col", "acc", "tile"];
  out.push("finish", "cols", "rows", "packed", "ablock", "src", "panel", "pa", "pb");
  for (let r = 0; r < block.rows; r++) {
    out.push(`a${r}`, `x${r}`);
    for (let c = 0; c < block.cols; c++) out.push(`c${r}${c}`);
  }
  for (let c = 0; c < block.cols; c++) out.push(`b${c}`);
  return out;
}

function checkSpec(s: MatmulSpec, block: Schedule): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!ok(s.K) || !ok(s.N)) throw new Error(`matmul ${s.name}: K and N must be positive integers`);
  if (!ok(block.rows) || !ok(block.cols) || block.rows > 9 || block.cols > 9)
    throw new Error(`matmul ${s.name}: block ${block.rows}×${block.cols} must be 1…9 × 1…9`);
}

/** `base + v * stride`, with the multiplication (or the whole term) left out where it is trivial. */
function plus(base: string, v: string, stride: string | number): string {
  if (stride === 0) return base;
  const term = stride === 1 ? v : `${/^\w+$/.test(v) ? v : `(${v})`} * ${stride}`;
  return base === "" || base === "0" ? term : `${base} + ${term}`;
}

export function renderMatmul(s: MatmulSpec): GeneratedFunction {
  const block = s.schedule ?? DEFAULT_SCHEDULE;
  checkSpec(s, block);
  const ids = new Identifiers(fixedLocals(block));
  const fn = ids.take(s.name);
  const param = (o: OperandSpec) => {
    const id = ids.take(o.name);
    return {
      id,
      off: ids.take(`${id}_off`),
      row: o.rowStride ?? ids.take(`${id}_row`),
      col: o.colStride ?? ids.take(`${id}_col`),
    };
  };
  const a = param(s.a);
  const w = ids.take(s.b.name);
  const extras = s.extras.map(param);
  const out = ids.take(s.out.name);
  const outOff = ids.take(`${out}_off`);

  const epilogue = renderExpr(s.expr, {
    target: "ts",
    acc: "acc",
    input: (n) => {
      const x = extras[n];
      if (!x)
        throw new Error(
          `matmul ${s.name}: the epilogue reads $${n}, but there are ${extras.length} extras`,
        );
      return `${x.id}[${plus(plus(x.off, "row", x.row), "col", x.col)}]`;
    },
    temp: ids.tempPrefix(),
  });

  const params = [
    `${a.id}: Float32Array`,
    `${a.off}: number`,
    ...(typeof a.row === "string" ? [`${a.row}: number`] : []),
    ...(typeof a.col === "string" ? [`${a.col}: number`] : []),
    `${w}: Float32Array`,
    ...extras.flatMap((x) => [
      `${x.id}: Float32Array`,
      `${x.off}: number`,
      ...(typeof x.row === "string" ? [`${x.row}: number`] : []),
      ...(typeof x.col === "string" ? [`${x.col}: number`] : []),
    ]),
    `${out}: Float32Array`,
    `${outOff}: number`,
    `M: number`,
  ];
  const { rows: R, cols: C, packA } = block;
  const names = s.extras.map((x, n) => `$${n} = %${x.name}`).join(", ");
  const source = [
    `/** ${commentText(s.irLine)}`,
    ` *  ${commentText(`%${s.out.name}`)}[M, ${s.N}] = ${commentText(formatExpr(s.expr))}, acc = ${commentText(`%${s.a.name}`)}[M, ${s.K}] · ${commentText(`%${s.b.name}`)}${s.transposeB ? "ᵀ" : ""}[${s.K}, ${s.N}]${names ? `; ${commentText(names)}` : ""}.`,
    ` *  ${w} is packed by pack_${fn} (panels of ${C} columns); blocks of ${R}×${C}, float64 accumulators. */`,
    `export function ${fn}(${params.join(", ")}): void {`,
    `  const K = ${s.K};`,
    `  const N = ${s.N};`,
    `  const tile = new Float64Array(${R * C}); // one block's accumulators, row-major`,
    ...(packA ? [`  const ablock = new Float64Array(${R} * K);`] : []),
    `  /** ${out}[i0 + r, j0 + c] = epilogue(tile[r, c]) for r < rows and columns < N. */`,
    `  const finish = (i0: number, j0: number, rows: number): void => {`,
    `    const cols = Math.min(${C}, N - j0);`,
    `    for (let r = 0; r < rows; r++) {`,
    `      const row = i0 + r;`,
    `      for (let c = 0; c < cols; c++) {`,
    `        const col = j0 + c;`,
    `        const acc = tile[r * ${C} + c];`,
    ...epilogue.temps.map((t) => `        ${t}`),
    `        ${out}[${outOff} + row * N + col] = ${epilogue.value};`,
    `      }`,
    `    }`,
    `  };`,
    `  let i = 0;`,
    `  for (; i + ${R} <= M; i += ${R}) {`,
    ...blockLoop(R, C, packA, a, w, "    "),
    `  }`,
    ...(R > 1 ? [`  for (; i < M; i++) {`, ...blockLoop(1, C, packA, a, w, "    "), `  }`] : []),
    `}`,
    ``,
  ].join("\n");
  return { name: fn, source, helpers: epilogue.helpers };
}

/** One block of `R` rows at row i: every panel, the K loop, then `finish`. With `packA`, the
 *  block's rows of a are first copied as float64, interleaved along K (one sequential stream,
 *  no float32 conversion and no stride in the K loop). */
function blockLoop(
  R: number,
  C: number,
  packA: boolean,
  a: { id: string; off: string; row: string | number; col: string | number },
  w: string,
  ind: string,
): string[] {
  const lines: string[] = [];
  const rowsOf = (f: (r: number) => string) => Array.from({ length: R }, (_, r) => f(r));
  const colsOf = (f: (c: number) => string) => Array.from({ length: C }, (_, c) => f(c));
  const step = [`k++`, `pb += ${C}`];
  let aRead: (r: number) => string;
  if (packA) {
    lines.push(
      R === 1
        ? `// row i of ${a.id} as float64: ablock[k] = ${a.id}[i, k]`
        : `// rows i…i + ${R - 1} of ${a.id} as float64, interleaved along K: ablock[k·${R} + r] = ${a.id}[i + r, k]`,
    );
    if (R === 1) lines.push(`const src = ${plus(a.off, "i", a.row)};`);
    else {
      lines.push(`for (let r = 0; r < ${R}; r++) {`);
      lines.push(`  const src = ${plus(a.off, "i + r", a.row)};`);
    }
    const inner = R === 1 ? "" : "  ";
    lines.push(
      `${inner}for (let k = 0; k < K; k++) ${R === 1 ? "ablock[k]" : `ablock[k * ${R} + r]`} = ${a.id}[${plus("src", "k", a.col)}];`,
    );
    if (R > 1) lines.push(`}`);
    if (R > 1) step.push(`pa += ${R}`);
    aRead = (r) => (R === 1 ? "ablock[k]" : r === 0 ? "ablock[pa]" : `ablock[pa + ${r}]`);
  } else {
    lines.push(
      ...rowsOf((r) =>
        r === 0 ? `const x0 = ${plus(a.off, "i", a.row)};` : `const x${r} = x${r - 1} + ${a.row};`,
      ),
    );
    aRead = (r) => `${a.id}[${plus(`x${r}`, "k", a.col)}]`;
  }
  lines.push(`for (let j = 0, panel = 0; j < N; j += ${C}, panel += ${C} * K) {`);
  for (let r = 0; r < R; r++) lines.push(`  let ${colsOf((c) => `c${r}${c} = 0`).join(", ")};`);
  const init = packA && R > 1 ? "let k = 0, pb = panel, pa = 0" : "let k = 0, pb = panel";
  lines.push(`  for (${init}; k < K; ${step.join(", ")}) {`);
  lines.push(`    const ${rowsOf((r) => `a${r} = ${aRead(r)}`).join(", ")};`);
  lines.push(
    `    const ${colsOf((c) => `b${c} = ${w}[${c === 0 ? "pb" : `pb + ${c}`}]`).join(", ")};`,
  );
  for (let r = 0; r < R; r++)
    lines.push(`    ${colsOf((c) => `c${r}${c} += a${r} * b${c};`).join(" ")}`);
  lines.push(`  }`);
  for (let r = 0; r < R; r++)
    lines.push(`  ${colsOf((c) => `tile[${r * C + c}] = c${r}${c};`).join(" ")}`);
  lines.push(`  finish(i, j, ${R});`);
  lines.push(`}`);
  return lines.map((l) => ind + l);
}

/** The function that packs b for the kernel `kernel` (renderMatmul's name): `pack_<kernel>(b,
 *  b_off)` returns the panels (module comment); run once, at load. */
export function renderPackB(s: MatmulSpec, kernel: string): GeneratedFunction {
  const block = s.schedule ?? DEFAULT_SCHEDULE;
  checkSpec(s, block);
  const ids = new Identifiers(fixedLocals(block));
  const fn = ids.take(`pack_${kernel}`);
  const b = ids.take(s.b.name);
  const off = ids.take(`${b}_off`);
  // Element (k, n) of the operand as the matmul uses it, read from b as stored.
  const [kStride, nStride] = s.transposeB
    ? [s.b.colStride ?? 1, s.b.rowStride ?? s.K]
    : [s.b.rowStride ?? s.N, s.b.colStride ?? 1];
  const C = block.cols;
  const stored = s.transposeB ? `[${s.N}, ${s.K}] (transposeB)` : `[${s.K}, ${s.N}]`;
  const source = [
    `/** Packs ${commentText(`%${s.b.name}`)} ${stored} for ${kernel}: panels of ${C} columns, each contiguous`,
    ` *  along K (panel p, row k, column c at (p·K + k)·${C} + c), the last zero-padded. Run once, at load. */`,
    `export function ${fn}(${b}: Float32Array, ${off}: number): Float32Array {`,
    `  const K = ${s.K};`,
    `  const N = ${s.N};`,
    `  const packed = new Float32Array(${packedLength(s.K, s.N, block.cols)});`,
    `  for (let j = 0, panel = 0; j < N; j += ${C}, panel += ${C} * K) {`,
    `    const cols = Math.min(${C}, N - j);`,
    `    for (let k = 0; k < K; k++) {`,
    `      for (let c = 0; c < cols; c++) {`,
    `        packed[panel + k * ${C} + c] = ${b}[${plus(plus(off, "k", kStride), "j + c", nStride)}];`,
    `      }`,
    `    }`,
    `  }`,
    `  return packed;`,
    `}`,
    ``,
  ].join("\n");
  return { name: fn, source, helpers: new Set() };
}
