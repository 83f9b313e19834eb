/** The matmul family as WGSL: out[..batch, M, N] = expr(acc = a[..batch, M, K] · b[..batch, K, N],
 *  extras…), computing what the Program interpreter's matmul (compiler/lower/kernels-matmul.ts)
 *  does, in f32. One kernel, two paths, chosen per dispatch by M (a dim in the `Dims` uniform, so
 *  the branch is uniform):
 *
 *  - Tiled (M > GEMV rows): one workgroup per (batch, row tile, column tile) output tile of
 *    `rows` × `cols` elements. Each step over K stages a `rows` × `depth` tile of a and a
 *    `depth` × `cols` tile of b in workgroup memory (zeros past M, N or K), then every invocation
 *    accumulates its `regRows` × `regCols` register block from them. Invocation (tx, ty) owns rows
 *    ty + r·(rows/regRows) and columns tx + c·(cols/regCols): neighbouring invocations read
 *    neighbouring words of the staged b tile (no bank conflicts) and store neighbouring output
 *    columns (coalesced). Tiles are staged in the order b's (or a's) memory runs: along K when
 *    that stride is 1 (a row-major, or b with transposeB), else along the other axis, so each
 *    wave reads contiguous words; each staged row is padded by one word, so a wave writing a
 *    tile column along K spreads over the banks.
 *  - GEMV (M ≤ GEMV rows, the decode step, which runs the same kernels with T = 1): a 64-row tile
 *    would leave 63/64 of its invocations idle and give only N/64 workgroups — 12 for GPT-2's
 *    768 columns, a tenth of a large GPU's compute units, for a kernel that streams all of b and
 *    is bound by memory bandwidth. Instead each workgroup takes `gemvCols` columns (16) and
 *    splits K into workgroup/gemvCols slices: invocation (c, slice) sums k = slice, slice + S, …
 *    for up to GEMV rows rows, its neighbours reading neighbouring words of b (along N, or along
 *    K with transposeB), and the slices' partial sums meet in workgroup memory. Every element of
 *    b is still read once, by 4× as many workgroups, all of whose invocations work.
 *
 *  Rules:
 *  - Operands are read through their views (s.view): any strides and offsets on a and b (a
 *    transposed or sliced a, a strided slice of a merged weight), batch axes pre-broadcast with
 *    stride 0, merged where every view's strides chain (coalesce). Every element access goes
 *    through s.read / s.write (chunked buffers: the lm-head's tied 50257×768 embedding as b).
 *  - The epilogue is applied once per output element, at the store (`emit`), reading each extra
 *    at the same (batch, row, column); extras are pre-broadcast to the output's shape.
 *  - Accumulation is f32 (fma), k in order within an invocation's share: the result differs
 *    from the float64 interpreter by f32 rounding of the sum, ~K·2⁻²⁴ relative at worst.
 *  - The tile is the first of `TILES` whose invocations and workgroup bytes fit the profile; a
 *    profile smaller than the smallest tile fails with a "limit" error naming the limit.
 *  - Dispatch: the workgroup count is a polynomial over the dims divided by a number, so
 *    ceil(M/rows) is bounded above by (M + rows − 1)/rows (exact when M is a number), with up to
 *    G − 1 more row groups when both paths exist (G = cols/gemvCols: at M = 1 the GEMV needs G×
 *    the column groups of the tiled path; fewer when N is a number). Workgroups past the path's
 *    own count return at once. Barriers stay in uniform control flow: the returns depend on `wg`
 *    and dims only; out-of-range invocations load zeros and skip their stores.
 *
 *  What a real GPU would want next (not built; the software adapter the tests run on cannot tell
 *  the difference, and neither path has been timed on a real GPU): f16 weights with `shader-f16`
 *  (half the bytes for the bandwidth-bound GEMV; accumulate in f32); subgroups (`subgroupAdd` for
 *  the GEMV's slice reduction instead of workgroup memory, shuffles to share register blocks,
 *  cooperative-matrix tiles where offered); vec4 loads (contiguous operands bound as
 *  `array<vec4<f32>>` when offsets and strides are multiples of 4: one 128-bit load per four
 *  elements, and vec4 reads of the staged tiles); double-buffered tiles (load K step i+1 into
 *  registers while computing step i); split-K for short, wide shapes; per-adapter tile tuning. */
import type { Dim } from "../../ir/shape.ts";
import type { KernelBody, View } from "../../lower/program.ts";
import { symAdd, symConst, symMul, symOfDim, symProduct } from "../../lower/sym.ts";
import type { SymInt } from "../../lower/sym.ts";
import { renderExpr } from "../expr-source.ts";
import { coalesce } from "../ts/source.ts";
import { atom, plus, u32, type WgslKernel, type WgslScope } from "./kernel.ts";
import { checkLimit } from "./limits.ts";
import { outputView } from "./kernels-map.ts";

type Body = Extract<KernelBody, { kind: "matmul" }>;

/** An output tile of `rows` × `cols`, K staged `depth` at a time, `regRows` × `regCols` outputs
 *  per invocation: (rows/regRows)·(cols/regCols) invocations, 4·depth·(rows + cols + 2) bytes
 *  (each staged row padded by one word). */
export interface Tile {
  readonly rows: number;
  readonly cols: number;
  readonly depth: number;
  readonly regRows: number;
  readonly regCols: number;
}

/** Most preferred first: 64×64 with 4×4 blocks on 256 invocations (8.1 KiB, about half the
 *  WebGPU default), then less workgroup memory, then fewer invocations. */
export const TILES: readonly Tile[] = [
  { rows: 64, cols: 64, depth: 16, regRows: 4, regCols: 4 }, // 256 inv, 8320 B
  { rows: 64, cols: 64, depth: 8, regRows: 4, regCols: 4 }, // 256 inv, 4160 B
  { rows: 32, cols: 32, depth: 16, regRows: 2, regCols: 2 }, // 256 inv, 4224 B
  { rows: 32, cols: 32, depth: 8, regRows: 2, regCols: 2 }, // 256 inv, 2112 B
  { rows: 32, cols: 32, depth: 8, regRows: 4, regCols: 4 }, // 64 inv, 2112 B
  { rows: 16, cols: 16, depth: 8, regRows: 2, regCols: 2 }, // 64 inv, 1088 B
  { rows: 16, cols: 16, depth: 4, regRows: 4, regCols: 4 }, // 16 inv, 544 B
  { rows: 8, cols: 8, depth: 4, regRows: 2, regCols: 2 }, // 16 inv, 288 B
  { rows: 4, cols: 4, depth: 4, regRows: 1, regCols: 1 }, // 16 inv, 160 B
];

export const invocations = (t: Tile): number => (t.rows / t.regRows) * (t.cols / t.regCols);
export const tileBytes = (t: Tile): number => 4 * t.depth * (t.rows + t.cols + 2);

/** The most rows the GEMV path takes. */
export const GEMV_ROWS = 4;

/** The GEMV path's shape for a tile: columns per workgroup, K slices, rows (0: no GEMV path,
 *  when the tile's workgroup memory cannot hold one partial sum per invocation). */
export function gemvShape(t: Tile): { cols: number; slices: number; rows: number } {
  const wg = invocations(t);
  const cols = Math.min(16, t.cols, wg);
  const rows = Math.min(GEMV_ROWS, Math.floor(tileBytes(t) / 4 / wg));
  return { cols, slices: wg / cols, rows };
}

/** The first tile that fits the profile, or a "limit" error for the smallest. */
export function chooseTile(s: WgslScope): Tile {
  const size = s.workgroupSize(Number.MAX_SAFE_INTEGER);
  const storage = s.limits.maxComputeWorkgroupStorageSize;
  const fit = TILES.find((t) => invocations(t) <= size && tileBytes(t) <= storage);
  if (fit) return fit;
  const t = TILES[TILES.length - 1];
  const what = `the smallest matmul tile (${t.rows}×${t.cols}, K step ${t.depth}) needs`;
  checkLimit(
    s.kernel.name,
    "maxComputeInvocationsPerWorkgroup",
    invocations(t),
    size,
    `${what} invocations:`,
  );
  checkLimit(
    s.kernel.name,
    "maxComputeWorkgroupStorageSize",
    tileBytes(t),
    storage,
    `${what} bytes of workgroup storage:`,
  );
  throw new Error("unreachable: the smallest tile fits but was not chosen");
}

/** ceil(d / t) + extra as `poly / per`, rounded up by the runtime: exact when d is a number,
 *  else (d + t·(extra + 1) − 1) / t, which is at least as large. */
function groupsOf(d: Dim, t: number, extra = 0): { poly: SymInt; per: number } {
  const n = typeof d === "number" ? d : undefined;
  if (n !== undefined) return { poly: symConst(Math.ceil(n / t) + extra), per: 1 };
  return { poly: symAdd(symOfDim(d), symConst(t * (extra + 1) - 1)), per: t };
}

const f32Of = (s: WgslScope, buffer: number, index: string): string => {
  const r = s.read(buffer, index);
  return s.elem(buffer) === "i32" ? `f32(${r})` : r;
};

/** `n * rest`, leaving out n = 1. */
const times = (n: string, rest: string): string => (n === "1u" ? rest : `${atom(n)} * ${rest}`);

/** `(x + t − 1) / t` as u32 source, folded when x is a literal. */
function ceilDiv(x: string, t: number): string {
  const m = /^(\d+)u$/.exec(x);
  if (m) return u32(Math.ceil(Number(m[1]) / t));
  return t === 1 ? x : `(${x} + ${u32(t - 1)}) / ${u32(t)}`;
}

export function matmul(s: WgslScope, body: Body, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const [a, b, ...extras] = s.kernel.inputs;
  const r = out.shape.length;
  const batch = out.shape.slice(0, r - 2);
  const tile = chooseTile(s);
  const gemv = gemvShape(tile);
  const wgSize = invocations(tile);

  // Sizes as u32 source.
  const Md = out.shape[r - 2];
  const Nd = out.shape[r - 1];
  const M = s.dim(Md);
  const N = s.dim(Nd);
  const K = s.dim(a.shape[r - 1]);
  const mStatic = typeof Md === "number" ? Md : undefined;
  // Which paths exist: GEMV when it fits the tile and M can be ≤ its rows; tiled unless M is a
  // number the GEMV path takes.
  const hasGemv = gemv.rows > 0 && (mStatic === undefined || mStatic <= gemv.rows);
  const hasTiled = !(hasGemv && mStatic !== undefined);

  // Views: offsets and strides (s.view checks the u32 reach of each).
  const views = [out, a, b, ...extras];
  const vs = views.map((v) => s.view(v));
  const st = (k: number, ax: number) => vs[k].strides[ax];
  const [om, on] = [st(0, r - 2), st(0, r - 1)];
  const [am, ak] = [st(1, r - 2), st(1, r - 1)];
  const [bk, bn] = body.transposeB ? [st(2, r - 1), st(2, r - 2)] : [st(2, r - 2), st(2, r - 1)];

  // Batch axes merged where every view's strides chain; bases per view from `bt`.
  const nest = coalesce(
    batch,
    views.map((v) => v.strides.slice(0, r - 2)),
  );
  const batchCount = s.sym(symProduct(batch));
  const baseNames = ["base_o", "base_a", "base_b", ...extras.map((_, i) => `base_e${i}`)];
  const bases = (): string[] => {
    const lines: string[] = [];
    const coords: string[] = [];
    let rest = "bt";
    for (let k = nest.sizes.length - 1; k >= 0; k--) {
      if (k === 0) {
        coords[k] = rest;
        break;
      }
      const size = atom(s.sym(nest.sizes[k]));
      lines.push(`let q${k} = ${atom(rest)} % ${size};`);
      lines.push(`let bt${k} = ${atom(rest)} / ${size};`);
      coords[k] = `q${k}`;
      rest = `bt${k}`;
    }
    views.forEach((_, v) => {
      const at = coords.reduce((acc, c, k) => plus(acc, c, s.sym(nest.strides[v][k])), vs[v].at);
      lines.push(`let ${baseNames[v]} = ${at === "" ? "0u" : at};`);
    });
    return lines;
  };

  // Module-scope functions: a's and b's elements (zero out of range), the epilogue store.
  const epi = renderExpr(body.expr, {
    target: "wgsl",
    acc: "acc",
    input: (i) =>
      f32Of(
        s,
        extras[i].buffer,
        plus(plus(`be${i}`, "m", st(3 + i, r - 2)), "n", st(3 + i, r - 1)),
      ),
    temp: "t",
  });
  const outValue = s.elem(out.buffer) === "i32" ? `i32(${epi.value})` : epi.value;
  const emitParams = [
    "bo: u32",
    ...extras.map((_, i) => `be${i}: u32`),
    "m: u32",
    "n: u32",
    "acc: f32",
  ];
  const emitArgs = (m: string, n: string, acc: string) =>
    ["base_o", ...extras.map((_, i) => `base_e${i}`), m, n, acc].join(", ");
  const decls = [
    `// a[m, k] of the batch at base, 0 past M or K.`,
    `fn elem_a(base: u32, m: u32, k: u32) -> f32 {`,
    `  if (m >= ${M} || k >= ${K}) {`,
    `    return 0.0;`,
    `  }`,
    `  return ${f32Of(s, a.buffer, plus(plus("base", "m", am), "k", ak))};`,
    `}`,
    `// b[k, n] of the batch at base (b as the product uses it), 0 past K or N.`,
    `fn elem_b(base: u32, k: u32, n: u32) -> f32 {`,
    `  if (k >= ${K} || n >= ${N}) {`,
    `    return 0.0;`,
    `  }`,
    `  return ${f32Of(s, b.buffer, plus(plus("base", "k", bk), "n", bn))};`,
    `}`,
    `// out[m, n] = epilogue(acc), nothing past M or N.`,
    `fn emit(${emitParams.join(", ")}) {`,
    `  if (m >= ${M} || n >= ${N}) {`,
    `    return;`,
    `  }`,
    ...epi.temps.map((t) => `  ${t}`),
    `  ${s.write(out.buffer, plus(plus("bo", "m", om), "n", on), outValue)}`,
    `}`,
    s.workgroupArray("sh", "f32", tileBytes(tile) / 4),
  ];

  const body_: string[] = [];
  if (hasGemv) {
    const { cols: C, slices: S } = gemv;
    const R = mStatic === undefined ? gemv.rows : Math.min(gemv.rows, mStatic);
    // Neighbouring invocations walk b's contiguous axis: K when its stride is 1, else N.
    const alongK = bk === "1u" && bn !== "1u";
    const gemvLines = [
      `// GEMV: ${C} columns per workgroup, K in ${S} slices, up to ${R} rows.`,
      `let groups = ${ceilDiv(N, C)};`,
      `if (wg >= ${times(batchCount, "groups")}) {`,
      `  return;`,
      `}`,
      `let g = wg % groups;`,
      `let bt = wg / groups;`,
      ...bases(),
      alongK ? `let slice = lid % ${u32(S)};` : `let slice = lid / ${u32(C)};`,
      alongK ? `let col = lid / ${u32(S)};` : `let col = lid % ${u32(C)};`,
      `let n = g * ${u32(C)} + col;`,
      ...Array.from({ length: R }, (_, i) => `var p${i} = 0.0;`),
      `if (n < ${N}) {`,
      `  let bcol = ${plus("base_b", "n", bn)};`,
      `  for (var k = slice; k < ${K}; k += ${u32(S)}) {`,
      `    let bv = ${f32Of(s, b.buffer, plus("bcol", "k", bk))};`,
      `    let a_k = ${plus("base_a", "k", ak)};`,
      ...gemvRows(
        R,
        (i) => `p${i} = fma(${f32Of(s, a.buffer, offset("a_k", i, am))}, bv, p${i});`,
        M,
        "    ",
      ),
      `  }`,
      `}`,
      ...Array.from({ length: R }, (_, i) => `sh[${u32(i * S * C)} + lid] = p${i};`),
      `workgroupBarrier();`,
      `if (lid < ${u32(R * C)}) {`,
      `  let row = lid / ${u32(C)};`,
      `  let c = lid % ${u32(C)};`,
      `  var acc = 0.0;`,
      // Partial (row, slice, col) sits at row·S·C + lid of its invocation.
      `  for (var j = 0u; j < ${u32(S)}; j++) {`,
      alongK
        ? `    acc += sh[row * ${u32(S * C)} + c * ${u32(S)} + j];`
        : `    acc += sh[row * ${u32(S * C)} + j * ${u32(C)} + c];`,
      `  }`,
      `  emit(${emitArgs("row", `g * ${u32(C)} + c`, "acc")});`,
      `}`,
    ];
    if (hasTiled)
      body_.push(
        `if (${M} <= ${u32(gemv.rows)}) {`,
        ...gemvLines.map((l) => `  ${l}`),
        `  return;`,
        `}`,
      );
    else body_.push(...gemvLines);
  }
  if (hasTiled) {
    const { rows: TM, cols: TN, depth: TK, regRows: RM, regCols: RN } = tile;
    const [TX, TY] = [TN / RN, TM / RM];
    // Staged rows padded by one word: a tile staged along K writes a column of it per wave,
    // which would otherwise hit one bank (stride 64 words).
    const [AS, BS] = [TM + 1, TN + 1];
    const bOff = TK * AS; // where the b tile starts in `sh`
    const aAlongK = ak === "1u" || am !== "1u";
    const bAlongK = bk === "1u" && bn !== "1u";
    const acc = (i: number, j: number) => `c${i}_${j}`;
    const grid = <T>(f: (i: number, j: number) => T): T[] =>
      Array.from({ length: RM }, (_, i) => Array.from({ length: RN }, (_, j) => f(i, j))).flat();
    body_.push(
      `// Tiled: ${TM}×${TN} outputs per workgroup, K in steps of ${TK}, ${RM}×${RN} per invocation.`,
      `let tiles_n = ${ceilDiv(N, TN)};`,
      `let tiles_m = ${ceilDiv(M, TM)};`,
      `if (wg >= ${times(batchCount, "tiles_m * tiles_n")}) {`,
      `  return;`,
      `}`,
      `let tn = wg % tiles_n;`,
      `let tmb = wg / tiles_n;`,
      `let tm = tmb % tiles_m;`,
      `let bt = tmb / tiles_m;`,
      ...bases(),
      `let m0 = tm * ${u32(TM)};`,
      `let n0 = tn * ${u32(TN)};`,
      `let tx = lid % ${u32(TX)};`,
      `let ty = lid / ${u32(TX)};`,
      ...Array.from({ length: RM }, (_, i) =>
        Array.from({ length: RN }, (_, j) => `var ${acc(i, j)} = 0.0;`).join(" "),
      ),
      `for (var k0 = 0u; k0 < ${K}; k0 += ${u32(TK)}) {`,
      `  // a tile at sh[k·${AS} + m], b tile at sh[${bOff} + k·${BS} + n]`,
      `  for (var l = lid; l < ${u32(TM * TK)}; l += ${u32(wgSize)}) {`,
      ...(aAlongK
        ? [`    let m = l / ${u32(TK)};`, `    let k = l % ${u32(TK)};`]
        : [`    let m = l % ${u32(TM)};`, `    let k = l / ${u32(TM)};`]),
      `    sh[k * ${u32(AS)} + m] = elem_a(base_a, m0 + m, k0 + k);`,
      `  }`,
      `  for (var l = lid; l < ${u32(TK * TN)}; l += ${u32(wgSize)}) {`,
      ...(bAlongK
        ? [`    let n = l / ${u32(TK)};`, `    let k = l % ${u32(TK)};`]
        : [`    let n = l % ${u32(TN)};`, `    let k = l / ${u32(TN)};`]),
      `    sh[${u32(bOff)} + k * ${u32(BS)} + n] = elem_b(base_b, k0 + k, n0 + n);`,
      `  }`,
      `  workgroupBarrier();`,
      `  for (var k = 0u; k < ${u32(TK)}; k++) {`,
      ...Array.from(
        { length: RM },
        (_, i) => `    let av${i} = sh[k * ${u32(AS)} + ${offset("ty", i, u32(TY))}];`,
      ),
      ...Array.from(
        { length: RN },
        (_, j) =>
          `    let bv${j} = sh[${u32(bOff)} + k * ${u32(BS)} + ${offset("tx", j, u32(TX))}];`,
      ),
      ...Array.from(
        { length: RM },
        (_, i) =>
          `    ${Array.from({ length: RN }, (_, j) => `${acc(i, j)} = fma(av${i}, bv${j}, ${acc(i, j)});`).join(" ")}`,
      ),
      `  }`,
      `  workgroupBarrier();`,
      `}`,
      ...grid(
        (i, j) =>
          `emit(${emitArgs(`m0 + ${offset("ty", i, u32(TY))}`, `n0 + ${offset("tx", j, u32(TX))}`, acc(i, j))});`,
      ),
    );
  }

  // Workgroups: the paths' counts, bounded above as a polynomial (module comment).
  const batchPoly = symProduct(batch);
  let count: { poly: SymInt; per: number };
  if (!hasTiled) count = groupsOf(Nd, gemv.cols);
  else {
    // Extra row groups so that (column tiles)·(row groups) covers the GEMV's column groups at
    // M = 1: G − 1 in general, fewer when N is a number (a narrow N has few GEMV groups).
    const G = tile.cols / gemv.cols;
    const extra = !hasGemv
      ? 0
      : typeof Nd === "number"
        ? Math.max(
            0,
            Math.ceil(Math.ceil(Nd / gemv.cols) / Math.max(1, Math.ceil(Nd / tile.cols))) - 1,
          )
        : G - 1;
    const n = groupsOf(Nd, tile.cols);
    const m = groupsOf(Md, tile.rows, extra);
    count = { poly: symMul(n.poly, m.poly), per: n.per * m.per };
  }
  const tileDoc = hasTiled
    ? `tiled: ${tile.rows}×${tile.cols} outputs per workgroup, K step ${tile.depth}, ${tile.regRows}×${tile.regCols} per invocation`
    : "";
  const gemvDoc = hasGemv
    ? `GEMV for M ≤ ${gemv.rows}: ${gemv.cols} columns per workgroup, K in ${gemv.slices} slices`
    : "";
  return s.finish({
    doc: [...doc, [tileDoc, gemvDoc].filter((x) => x).join("; ")],
    workgroupSize: wgSize,
    workgroups: { count: symMul(batchPoly, count.poly), per: count.per },
    body: body_,
    decls,
    helpers: epi.helpers,
  });
}

/** `base + i·stride` with the literal folded: `ty + 32u`, `a_k + 2u * dims.d1`. */
function offset(base: string, i: number, stride: string): string {
  if (i === 0) return base;
  const lit = /^(\d+)u$/.exec(stride);
  if (lit) return Number(lit[1]) === 0 ? base : `${base} + ${u32(i * Number(lit[1]))}`;
  return plus(base, u32(i), stride).replace(/^(.*) \+ 1u \* /, "$1 + ");
}

/** The GEMV's per-row statements: row 0 always, row i only when M > i (a uniform branch). */
function gemvRows(R: number, line: (i: number) => string, M: string, ind: string): string[] {
  const out: string[] = [];
  let depth = 0;
  for (let i = 0; i < R; i++) {
    const pad = ind + "  ".repeat(depth);
    if (i > 0) {
      out.push(`${pad}if (${M} > ${u32(i)}) {`);
      depth++;
    }
    out.push(`${ind}${"  ".repeat(depth)}${line(i)}`);
  }
  for (let d = depth; d > 0; d--) out.push(`${ind}${"  ".repeat(d - 1)}}`);
  return out;
}
