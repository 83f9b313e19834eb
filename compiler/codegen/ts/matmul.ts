/** The matmul family as TypeScript source: out[M, N] = expr(acc = a[M, K] · b[K, N], extras…),
 *  K, N, the epilogue and the strides that are known baked in, M a run-time argument.
 *
 *  - b is a weight (or any operand fixed for many calls): `renderPackB` makes the function that
 *    packs it once, at load, into panels of `cols` columns (the schedule's), each contiguous
 *    along K (panel p, row k, column c at (p·K + k)·cols + c), the last zero-padded to full width.
 *    transposeB only changes how the packing reads b; the kernel never sees it.
 *  - The kernel walks blocks of `rows` × `cols` outputs, one panel wide. A block's rows of a are
 *    first copied to a float64 scratch, interleaved along K with the panel's stride (ablock[k·cols
 *    + r] = a[i + r, k]), so one index q = k·cols reads both a and the panel (a view of it,
 *    `w.subarray`): no offset arithmetic per read beyond `q + c`. Each step reads `rows` values of
 *    a and, column by column, one packed b value that updates `rows` accumulators (`c00` …,
 *    locals). TurboFan (Node 20) still bounds-checks every read and re-checks both arrays each
 *    iteration, and computes a step's products before its adds, so with 3×3 four accumulators
 *    live on the stack; larger blocks spill more and ran slower (README, development notes).
 *    The block is stored into `tile` and finished by `finish`: the epilogue on each float64
 *    accumulator, then the float32 store. Rows past the last full block (and M = 1, decoding) go
 *    through a one-row kernel that walks `span` panels at once through one view (one a value
 *    read per `span`·`cols` products).
 *    The zero-padded last panel makes every panel full-width; `finish` stores only columns < N.
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

/** How the kernel walks the output (module comment). */
export interface Schedule {
  /** Rows of a block: 1 … cols (a block's rows of a sit in the panel's stride). */
  readonly rows: number;
  /** Columns of a panel, and of a block. */
  readonly cols: number;
  /** Panels the one-row kernel walks at once. */
  readonly span: number;
}

/** The schedule the benchmark (bench/matmul-kernel.ts) found fastest here: 3×3 blocks (9
 *  accumulators; V8 spills four of them, 4×4 and 4×8 spill more) beat 4×4 and 4×8 by 10–20% at
 *  every GPT-2 shape, and a span of 4 panels (12 columns) per one-row pass matches the widest
 *  panels at M = 1. */
export const DEFAULT_SCHEDULE: Schedule = { rows: 3, cols: 3, span: 4 };

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
  out.push("finish", "cols", "rows", "width", "packed", "ablock", "src", "panel", "q", "wp", "x");
  out.push("colFrom", "colTo", "colEnd", "memory", "size");
  for (let r = 0; r < block.rows; r++) {
    out.push(`a${r}`);
    for (let c = 0; c < block.cols; c++) out.push(`c${r}${c}`);
  }
  for (let c = 0; c < block.cols; c++) out.push(`b${c}`);
  for (let n = 0; n < block.span * block.cols; n++) out.push(`y${n}`);
  return out;
}

function checkSpec(s: MatmulSpec, block: Schedule): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n > 0;
  if (!ok(s.K) || !ok(s.N)) throw new Error(`matmul ${s.name}: K and N must be positive integers`);
  if (!ok(block.rows) || !ok(block.cols) || block.cols > 9 || block.rows > block.cols)
    throw new Error(
      `matmul ${s.name}: block ${block.rows}×${block.cols} must have 1…9 columns and no more rows than columns`,
    );
  if (!ok(block.span) || block.span > 8)
    throw new Error(`matmul ${s.name}: span ${block.span} must be 1…8 panels`);
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
  const { rows: R, cols: C, span: S } = block;
  // the column range: optional, so a caller that does not split calls with the parameters above
  params.push(`colFrom = 0`, `colTo = ${s.N}`);
  const names = s.extras.map((x, n) => `$${n} = %${x.name}`).join(", ");
  const source = [
    `/** ${commentText(s.irLine)}`,
    ` *  ${commentText(`%${s.out.name}`)}[M, ${s.N}] = ${commentText(formatExpr(s.expr))}, acc = ${commentText(`%${s.a.name}`)}[M, ${s.K}] · ${commentText(`%${s.b.name}`)}${s.transposeB ? "ᵀ" : ""}[${s.K}, ${s.N}]${names ? `; ${commentText(names)}` : ""}.`,
    ` *  ${w} is packed by pack_${fn} (panels of ${C} columns); blocks of ${R}×${C}, rows past them ${S} panels at a time; float64 accumulators.`,
    ` *  Writes columns colFrom ≤ j < colTo (multiples of ${C}, or colTo = N): threads may share the columns. */`,
    `export function ${fn}(${params.join(", ")}): void {`,
    `  const K = ${s.K};`,
    `  const N = ${s.N};`,
    `  const colEnd = Math.ceil(colTo / ${C}) * ${C}; // colTo rounded up to a whole panel`,
    `  const tile = new Float64Array(${Math.max(R, S) * C}); // one block's accumulators, row-major`,
    `  // the current rows of ${a.id} as float64, interleaved along K: ablock[k·${C} + r] = ${a.id}[i + r, k]`,
    `  const ablock = new Float64Array(${C} * K);`,
    `  /** ${out}[i0 + r, j0 + c] = epilogue(tile[r·width + c]) for r < rows, c < width and j0 + c < N. */`,
    `  const finish = (i0: number, j0: number, rows: number, width: number): void => {`,
    `    const cols = Math.min(width, N - j0);`,
    `    for (let r = 0; r < rows; r++) {`,
    `      const row = i0 + r;`,
    `      for (let c = 0; c < cols; c++) {`,
    `        const col = j0 + c;`,
    `        const acc = tile[r * width + c];`,
    ...epilogue.temps.map((t) => `        ${t}`),
    `        ${out}[${outOff} + row * N + col] = ${epilogue.value};`,
    `      }`,
    `    }`,
    `  };`,
    `  let i = 0;`,
    ...(R > 1
      ? [
          `  // blocks of ${R} rows × ${C} columns`,
          `  for (; i + ${R} <= M; i += ${R}) {`,
          ...blockLoop(R, C, a, w, "    "),
          `  }`,
        ]
      : []),
    `  // ${R > 1 ? "the rows left" : "every row"}, one at a time${S > 1 ? `: ${S} panels (${S * C} columns) per pass, then one panel at a time` : ""}`,
    `  for (; i < M; i++) {`,
    ...rowLoop(C, S, s.K, a, w, "    "),
    `  }`,
    `}`,
    ``,
  ].join("\n");
  return { name: fn, source, helpers: epilogue.helpers };
}

interface AOperand {
  readonly id: string;
  readonly off: string;
  readonly row: string | number;
  readonly col: string | number;
}

/** Copies rows i…i + rows − 1 of a into ablock, interleaved along K with stride C. */
function copyA(rows: number, C: number, a: AOperand): string[] {
  const copy = (r: string) =>
    `for (let k = 0; k < K; k++) ablock[${C === 1 ? "k" : `k * ${C}`}${r === "0" ? "" : ` + ${r}`}] = ${a.id}[${plus("src", "k", a.col)}];`;
  if (rows === 1) return [`const src = ${plus(a.off, "i", a.row)};`, copy("0")];
  return [
    `for (let r = 0; r < ${rows}; r++) {`,
    `  const src = ${plus(a.off, "i + r", a.row)};`,
    `  ${copy("r")}`,
    `}`,
  ];
}

/** One block of `R` rows at row i: ablock, then every panel: the K loop, then `finish`. */
function blockLoop(R: number, C: number, a: AOperand, w: string, ind: string): string[] {
  const lines = [...copyA(R, C, a)];
  const rowsOf = (f: (r: number) => string) => Array.from({ length: R }, (_, r) => f(r));
  const at = (base: string, n: number) => (n === 0 ? `${base}[q]` : `${base}[q + ${n}]`);
  lines.push(
    `for (let j = colFrom, panel = colFrom * K; j < colTo; j += ${C}, panel += ${C} * K) {`,
  );
  lines.push(`  // this panel: wp[k·${C} + c] = b[k, j + c]`);
  lines.push(`  const wp = ${w}.subarray(panel, panel + ${C} * K);`);
  for (let r = 0; r < R; r++)
    lines.push(`  let ${Array.from({ length: C }, (_, c) => `c${r}${c} = 0`).join(", ")};`);
  lines.push(`  for (let q = 0; q < ${C} * K; q += ${C}) {`);
  lines.push(`    const ${rowsOf((r) => `a${r} = ${at("ablock", r)}`).join(", ")};`);
  for (let c = 0; c < C; c++)
    lines.push(
      `    const b${c} = ${at("wp", c)}; ${rowsOf((r) => `c${r}${c} += a${r} * b${c};`).join(" ")}`,
    );
  lines.push(`  }`);
  for (let r = 0; r < R; r++)
    lines.push(
      `  ${Array.from({ length: C }, (_, c) => `tile[${r * C + c}] = c${r}${c};`).join(" ")}`,
    );
  lines.push(`  finish(i, j, ${R}, ${C});`);
  lines.push(`}`);
  return lines.map((l) => ind + l);
}

/** One row at row i: ablock's row 0, then `S` panels per pass through one view of them (panel p of
 *  the view at p·C·K), the panels left one per pass; accumulator yn is column j + n. */
function rowLoop(C: number, S: number, K: number, a: AOperand, w: string, ind: string): string[] {
  const lines = [...copyA(1, C, a)];
  const pass = (P: number): string[] => {
    const width = P * C;
    const cols = Array.from({ length: width }, (_, n) => n);
    const read = (n: number) => {
      const off = Math.floor(n / C) * C * K + (n % C);
      return off === 0 ? "wp[q]" : `wp[q + ${off}]`;
    };
    return [
      `  const wp = ${w}.subarray(panel, panel + ${P === 1 ? "" : `${P} * `}${C} * K);`,
      `  let ${cols.map((n) => `y${n} = 0`).join(", ")};`,
      `  for (let q = 0; q < ${C} * K; q += ${C}) {`,
      `    const x = ablock[q];`,
      ...chunk(cols, C).map((ns) => `    ${ns.map((n) => `y${n} += x * ${read(n)};`).join(" ")}`),
      `  }`,
      ...chunk(cols, C).map((ns) => `  ${ns.map((n) => `tile[${n}] = y${n};`).join(" ")}`),
      `  finish(i, j, 1, ${width});`,
    ];
  };
  lines.push(`let j = colFrom, panel = colFrom * K;`);
  if (S > 1) {
    lines.push(`// panel p of a pass's view starts at p·${C * K}`);
    lines.push(`for (; j + ${S * C} <= colEnd; j += ${S * C}, panel += ${S * C} * K) {`);
    lines.push(...pass(S));
    lines.push(`}`);
  }
  lines.push(`for (; j < colTo; j += ${C}, panel += ${C} * K) {`);
  lines.push(...pass(1));
  lines.push(`}`);
  return lines.map((l) => ind + l);
}

function chunk<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
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
    ` *  along K (panel p, row k, column c at (p·K + k)·${C} + c), the last zero-padded. Run once, at load;`,
    ` *  memory, when given, makes the storage (a SharedArrayBuffer, for threads). */`,
    `export function ${fn}(${b}: Float32Array, ${off}: number, memory?: (bytes: number) => ArrayBufferLike): Float32Array {`,
    `  const K = ${s.K};`,
    `  const N = ${s.N};`,
    `  const size = ${packedLength(s.K, s.N, block.cols)};`,
    `  const packed = memory ? new Float32Array(memory(size * 4)) : new Float32Array(size);`,
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
