/** The attention family as WGSL: flash-style fused attention with an online softmax, as the
 *  Program interpreter (compiler/lower/kernels-matmul.ts `attend`) computes it, in f32. No
 *  [Tq, Tk] score buffer exists anywhere.
 *
 *  Work split: one workgroup per (head h, block of BQ query rows); workgroups run the blocks of a
 *  head back to front, so under a causal rule the blocks that see the most keys start first. When
 *  T < BQ (a decode step: T = 1) the one block has T rows rounded up to a power of two, so its
 *  rows get more lanes (below) — the choice is made at run time from the dims.
 *  Per workgroup:
 *  - the block's q rows (head h's D columns) are loaded once into workgroup memory;
 *  - the keys the block can see are walked in tiles of BK keys. Per tile, four phases, each
 *    ended by a barrier (all in uniform control flow: the tile loop's bounds depend only on
 *    the workgroup index and the dims):
 *      1. the K tile [BK, D] is loaded into workgroup memory (and, with a key mask, each key's
 *         visibility: mask ≠ 0 hides it);
 *      2. scores: each query row has `lanes` invocations (WG / rows, at most BK); lane u scores
 *         keys u, u + lanes, … of the tile (dot over D from workgroup memory, times scale),
 *         keeps them in registers and publishes its partial max;
 *      3. every lane of a row combines the partial maxima into the row's new running max m
 *         (all lanes compute the same value), turns its scores into weights exp(s − m) in
 *         workgroup memory and keeps a partial running sum; lane 0 publishes the rescale factor
 *         α = exp(m_old − m_new). Meanwhile the V tile replaces the K tile (hidden keys load 0);
 *      4. each invocation owns fixed output elements (row r, column e) of the block and updates
 *         its accumulator acc = acc·α + Σ_j p[r, j]·V[j, e] over the keys row r sees.
 *    At the end the lanes' partial sums give each row's l, and out = acc / l (0 when the row
 *    saw no key).
 *  - Tiles are sized at compile time from the head dim D: within min(16 KiB, the profile's
 *    workgroup storage) — the WebGPU default, which also keeps several workgroups resident per
 *    core on real GPUs — starting from BQ = 16 (fewer when T is bounded lower) and BK = 32,
 *    halving the larger until they fit. Tile rows are padded to an odd stride so lanes reading
 *    consecutive keys hit different memory banks. Any D works (5, 64, 128, …); a D too large
 *    for even 1×1 tiles fails with a "limit" error from `finish`.
 *
 *  Masking (WGSL assumes finite math: no ±∞ or NaN is ever produced or relied on): key j is
 *  hidden from query i when j > i + (Tk − Tq) (causal) or mask[j] ≠ 0. A hidden key's score is
 *  never computed, its weight is a literal 0, its V row is loaded as 0 (mask) or never read
 *  (causal), so whatever hidden slots hold (NaN, 1e10) cannot reach an output. NEG_BIG (the
 *  finite −∞) only starts the running max; the first tile a row sees anything in takes no
 *  exp(NEG_BIG − m). A row that sees no key gets zeros (l = 0 → acc / 1 with acc = 0).
 *
 *  attention_cached (program.ts's KV-cache rule): Tk = P + T, causal offset P; key j < P is read
 *  from cache row j, key j ≥ P from new k/v row j − P (a tile may straddle P). The invocations of
 *  the workgroup for (h, block) also copy columns [h·D, (h+1)·D) of new k and v rows i of the
 *  block to cache rows P + i. Every invocation of the dispatch reads cache rows < P only and
 *  writes rows ≥ P only, so the append races with nothing and needs no barrier. */
import type { KernelBody, View } from "../../lower/program.ts";
import { symAdd, symConst, symOfDim, symScale } from "../../lower/sym.ts";
import { renderNumber } from "../expr-source.ts";
import { NEG_BIG, plus, u32, type WgslKernel, type WgslScope } from "./kernel.ts";
import { outputView } from "./kernels-map.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

/** Workgroup storage the tiles may use, at most (bytes). */
const STORAGE_CAP = 16384;

/** Compile-time shape of the work. */
export interface Tiles {
  /** Head dim. */
  readonly d: number;
  /** Row stride of the q and k/v tiles in workgroup memory: d, made odd. */
  readonly dp: number;
  /** Query rows per workgroup. */
  readonly bq: number;
  /** Keys per tile. */
  readonly bk: number;
  /** Invocations per query row in the score and weight phases, for a full block (a smaller
   *  block at run time gets more, up to bk). */
  readonly lanes: number;
  readonly wg: number;
  /** Keys of a tile each lane scores, at most: ceil(bk / lanes). */
  readonly perLane: number;
  /** Output elements each invocation accumulates: ceil(bq·d / wg). */
  readonly perInvocation: number;
}

/** 4-byte words of workgroup storage the tiles declare. */
function words(t: Omit<Tiles, "perLane" | "perInvocation">, masked: boolean): number {
  return (t.bq + t.bk) * t.dp + t.bq * t.bk + 2 * t.wg + t.bq + (masked ? t.bk : 0);
}

const pow2Floor = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));
const pow2Ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Tile sizes for head dim d, at most `rows` query rows (T at capacity), within the profile and
 *  `wgMax` invocations. */
export function chooseTiles(
  limits: WgslScope["limits"],
  wgMax: number,
  d: number,
  rows: number,
  masked: boolean,
): Tiles {
  const budget = Math.floor(Math.min(STORAGE_CAP, limits.maxComputeWorkgroupStorageSize) / 4);
  const wg = Math.min(wgMax, d >= 32 ? 128 : 64);
  const dp = d % 2 === 0 ? d + 1 : d;
  let bq = Math.min(16, Number.isFinite(rows) ? pow2Ceil(rows) : 16, pow2Floor(wg));
  let bk = 32;
  const shape = () => ({ d, dp, bq, bk, wg, lanes: Math.min(Math.floor(wg / bq), bk) });
  while (words(shape(), masked) > budget && (bq > 1 || bk > 1)) {
    if (bk > bq || bq === 1) bk /= 2;
    else bq /= 2;
  }
  const t = shape();
  return {
    ...t,
    perLane: Math.ceil(bk / t.lanes),
    perInvocation: Math.ceil((bq * d) / wg),
  };
}

/** What differs between the two bodies. */
interface Spec {
  readonly heads: number;
  readonly scale: number;
  readonly causal: boolean;
  readonly q: View;
  readonly k: View;
  readonly v: View;
  readonly mask: View | undefined;
  /** attention_cached: the caches and the cached length P (as u32 source). */
  readonly cache: { readonly k: View; readonly v: View; readonly past: string } | undefined;
}

/** A view's element (row, col) as u32 index source, given its head base `base` (the view's
 *  offset plus column h·D). */
function rowCol(base: string, strides: readonly string[], row: string, col: string): string {
  return plus(plus(base, row, strides[0]), col, strides[1]);
}

function flash(s: WgslScope, sp: Spec, doc: readonly string[]): WgslKernel {
  const out = outputView(s);
  const c = out.shape[1];
  // The IR's type rule guarantees both (a static C that splits into the heads).
  if (typeof c !== "number" || c % sp.heads !== 0)
    throw new Error(`${s.kernel.name}: attention needs a static width split into heads`);
  const d = c / sp.heads;
  const masked = sp.mask !== undefined;
  const t = chooseTiles(s.limits, s.workgroupSize(128), d, s.dimAtCapacity(sp.q.shape[0]), masked);

  // Views as u32 source.
  const qv = s.view(sp.q);
  const kv = s.view(sp.k);
  const vv = s.view(sp.v);
  const ov = s.view(out);
  const mv = sp.mask ? s.view(sp.mask) : undefined;
  const cache = sp.cache
    ? { k: s.view(sp.cache.k), v: s.view(sp.cache.v), kb: sp.cache.k.buffer, vb: sp.cache.v.buffer }
    : undefined;
  const f32At = (buffer: number, index: string) => {
    const r = s.read(buffer, index);
    return s.elem(buffer) === "i32" ? `f32(${r})` : r;
  };
  const readQ = (row: string, col: string) =>
    f32At(sp.q.buffer, rowCol("q_h", qv.strides, row, col));
  const readK = (row: string, col: string) =>
    f32At(sp.k.buffer, rowCol("k_h", kv.strides, row, col));
  const readV = (row: string, col: string) =>
    f32At(sp.v.buffer, rowCol("v_h", vv.strides, row, col));

  /** Statements storing key `j`'s (k or v) column e into `dest`, from the cache or the new rows. */
  const loadKey = (which: "k" | "v", dest: string, j: string, indent: string): string[] => {
    const fresh = which === "k" ? readK : readV;
    if (!cache) return [`${indent}${dest} = ${fresh(j, "e")};`];
    const cv = which === "k" ? cache.k : cache.v;
    const cb = which === "k" ? cache.kb : cache.vb;
    return [
      `${indent}if (${j} < past) {`,
      `${indent}  ${dest} = ${f32At(cb, rowCol(`${which}c_h`, cv.strides, j, "e"))};`,
      `${indent}} else {`,
      `${indent}  ${dest} = ${fresh(`${j} - past`, "e")};`,
      `${indent}}`,
    ];
  };
  const vis = (jj: string) => (masked ? ` && key_vis[${jj}] != 0u` : "");
  const rowEnd = (i: string) => (sp.causal ? `row_end(${i}, t0, len, tq, tk)` : "len");
  const scaled = sp.scale === 1 ? "qk" : `qk * ${renderNumber(sp.scale, "wgsl")}`;
  const zero = (buffer: number) => (s.elem(buffer) === "i32" ? "0" : "0.0");

  const decls = [
    `const D = ${u32(d)}; // head dim`,
    `const DP = ${u32(t.dp)}; // row stride of the q and k/v tiles (odd: no bank conflicts)`,
    `const BQ = ${u32(t.bq)}; // query rows per workgroup`,
    `const BK = ${u32(t.bk)}; // keys per tile`,
    `const WG = ${u32(t.wg)}; // invocations per workgroup`,
    `const KPL = ${u32(t.perLane)}; // keys of a tile per lane, at most`,
    `const OPI = ${u32(t.perInvocation)}; // output elements per invocation`,
    `const NEG_BIG: f32 = ${NEG_BIG}; // the finite -inf`,
    "",
    s.workgroupArray("q_tile", "f32", t.bq * t.dp),
    s.workgroupArray("kv_tile", "f32", t.bk * t.dp),
    s.workgroupArray("p_tile", "f32", t.bq * t.bk),
    s.workgroupArray("part_max", "f32", t.wg),
    s.workgroupArray("part_any", "u32", t.wg),
    s.workgroupArray("row_alpha", "f32", t.bq),
    ...(masked ? [s.workgroupArray("key_vis", "u32", t.bk)] : []),
    ...(sp.causal
      ? [
          "",
          "// How many keys of the tile [t0, t0 + len) query row i sees: j <= i + (tk - tq).",
          "fn row_end(i: u32, t0: u32, len: u32, tq: u32, tk: u32) -> u32 {",
          "  let lim = i + 1u + tk;",
          "  let first = tq + t0;",
          "  return select(0u, min(len, lim - first), lim > first);",
          "}",
        ]
      : []),
  ];

  const headBase = (name: string, at: string, colStride: string) =>
    `let ${name} = ${plus(at, "hd", colStride)};`;
  const body = [
    `let tq = ${s.dim(sp.q.shape[0])}; // query rows`,
    ...(sp.cache
      ? [
          `let past = ${sp.cache.past}; // cached rows`,
          `let tk = past + ${s.dim(sp.k.shape[0])}; // keys: cached, then new`,
        ]
      : [`let tk = ${s.dim(sp.k.shape[0])}; // keys`]),
    `let blocks = (tq + BQ - 1u) / BQ;`,
    `if (wg >= ${u32(sp.heads)} * blocks) {`,
    `  return;`,
    `}`,
    `let h = wg / blocks;`,
    `let q0 = (blocks - 1u - wg % blocks) * BQ; // a head's last blocks (the most keys) first`,
    `let hd = h * D;`,
    headBase("q_h", qv.at, qv.strides[1]),
    headBase("k_h", kv.at, kv.strides[1]),
    headBase("v_h", vv.at, vv.strides[1]),
    ...(cache
      ? [
          headBase("kc_h", cache.k.at, cache.k.strides[1]),
          headBase("vc_h", cache.v.at, cache.v.strides[1]),
        ]
      : []),
    ...(sp.causal
      ? [
          `let rows_end = min(q0 + BQ, tq);`,
          `// keys any row of the block sees`,
          `let k_end = select(0u, min(tk, rows_end + tk - tq), rows_end + tk > tq);`,
        ]
      : [`let k_end = tk;`]),
    `// This invocation as lane \`lane\` of query row r (scores and weights).`,
    `// Rows per block: BQ, or T rounded up to a power of two when smaller (a decode step's one`,
    `// row gets all the lanes). Either way the block count is ceil(T / BQ).`,
    `let bq = 1u << (32u - countLeadingZeros(min(max(tq, 1u), BQ) - 1u));`,
    `let lanes = min(WG / bq, BK);`,
    `let kpl = (BK + lanes - 1u) / lanes; // keys of a tile per lane`,
    `let r = lid / lanes;`,
    `let lane = lid % lanes;`,
    `let i = q0 + r;`,
    `let scoring = lid < bq * lanes && i < tq;`,
    `var m = NEG_BIG; // running max (all lanes of a row agree)`,
    `var l = 0.0; // this lane's part of the running sum`,
    `var seen = false; // the row has seen a key`,
    `var sc: array<f32, KPL>; // this lane's scores in the tile (kpl <= KPL)`,
    `var acc: array<f32, OPI>; // output element x = lid + t * WG is (row x / D, column x % D)`,
    ``,
    `for (var x = lid; x < bq * D; x += WG) {`,
    `  let qi = q0 + x / D;`,
    `  let e = x % D;`,
    `  if (qi < tq) {`,
    `    q_tile[(x / D) * DP + e] = ${readQ("qi", "e")};`,
    `  }`,
    `}`,
    `for (var t0 = 0u; t0 < k_end; t0 += BK) {`,
    `  let len = min(BK, tk - t0);`,
    ...(sp.mask && mv
      ? [
          `  for (var jj = lid; jj < BK; jj += WG) {`,
          `    var shown = 0u;`,
          `    if (jj < len) {`,
          `      shown = select(1u, 0u, ${s.read(sp.mask.buffer, plus(mv.at, "t0 + jj", mv.strides[0]))} != ${zero(sp.mask.buffer)});`,
          `    }`,
          `    key_vis[jj] = shown;`,
          `  }`,
        ]
      : []),
    `  // 1. the K tile`,
    `  for (var x = lid; x < BK * D; x += WG) {`,
    `    let jj = x / D;`,
    `    let e = x % D;`,
    `    if (jj < len) {`,
    ...loadKey("k", "kv_tile[jj * DP + e]", "t0 + jj", "      "),
    `    }`,
    `  }`,
    `  workgroupBarrier();`,
    `  // 2. scores of this lane's keys, and their max`,
    `  let end = ${rowEnd("i")};`,
    `  var pm = NEG_BIG;`,
    `  var pv = 0u;`,
    `  if (scoring) {`,
    `    for (var n = 0u; n < kpl; n += 1u) {`,
    `      let jj = lane + n * lanes;`,
    `      if (jj < end${vis("jj")}) {`,
    `        var qk = 0.0;`,
    `        for (var e = 0u; e < D; e += 1u) {`,
    `          qk += q_tile[r * DP + e] * kv_tile[jj * DP + e];`,
    `        }`,
    `        let score = ${scaled};`,
    `        sc[n] = score;`,
    `        pm = max(pm, score);`,
    `        pv = 1u;`,
    `      }`,
    `    }`,
    `  }`,
    `  if (lid < bq * lanes) {`,
    `    part_max[lid] = pm;`,
    `    part_any[lid] = pv;`,
    `  }`,
    `  workgroupBarrier();`,
    `  // 3. the row's new max, this lane's weights and sum; the V tile replaces the K tile`,
    `  if (scoring) {`,
    `    var mt = m;`,
    `    var got = false;`,
    `    for (var n = 0u; n < lanes; n += 1u) {`,
    `      if (part_any[r * lanes + n] != 0u) {`,
    `        mt = max(mt, part_max[r * lanes + n]);`,
    `        got = true;`,
    `      }`,
    `    }`,
    `    var alpha = 1.0;`,
    `    if (got) {`,
    `      if (seen) {`,
    `        alpha = exp(m - mt);`,
    `      }`,
    `      m = mt;`,
    `      seen = true;`,
    `    }`,
    `    l *= alpha;`,
    `    for (var n = 0u; n < kpl; n += 1u) {`,
    `      let jj = lane + n * lanes;`,
    `      if (jj < BK) {`,
    `        var p = 0.0;`,
    `        if (jj < end${vis("jj")}) {`,
    `          p = exp(sc[n] - m);`,
    `        }`,
    `        p_tile[r * BK + jj] = p;`,
    `        l += p;`,
    `      }`,
    `    }`,
    `    if (lane == 0u) {`,
    `      row_alpha[r] = alpha;`,
    `    }`,
    `  }`,
    `  for (var x = lid; x < BK * D; x += WG) {`,
    `    let jj = x / D;`,
    `    let e = x % D;`,
    `    if (jj < len) {`,
    ...(masked
      ? [
          `      var val = 0.0; // a hidden key's value is never read`,
          `      if (key_vis[jj] != 0u) {`,
          ...loadKey("v", "val", "t0 + jj", "        "),
          `      }`,
          `      kv_tile[jj * DP + e] = val;`,
        ]
      : loadKey("v", "kv_tile[jj * DP + e]", "t0 + jj", "      ")),
    `    }`,
    `  }`,
    `  workgroupBarrier();`,
    `  // 4. acc = acc * alpha + P V over the keys the row sees`,
    `  for (var n = 0u; n < OPI; n += 1u) {`,
    `    let x = lid + n * WG;`,
    `    let rr = x / D;`,
    `    let ii = q0 + rr;`,
    `    if (x < bq * D && ii < tq) {`,
    `      let e = x % D;`,
    `      let keys = ${rowEnd("ii")};`,
    `      var o = acc[n] * row_alpha[rr];`,
    `      for (var jj = 0u; jj < keys; jj += 1u) {`,
    `        o += p_tile[rr * BK + jj] * kv_tile[jj * DP + e];`,
    `      }`,
    `      acc[n] = o;`,
    `    }`,
    `  }`,
    `  workgroupBarrier();`,
    `}`,
    `// The rows' sums from the lanes' parts; out = acc / l (zeros for a row that saw no key).`,
    `if (lid < bq * lanes) {`,
    `  part_max[lid] = l;`,
    `}`,
    `workgroupBarrier();`,
    `for (var n = 0u; n < OPI; n += 1u) {`,
    `  let x = lid + n * WG;`,
    `  let rr = x / D;`,
    `  let ii = q0 + rr;`,
    `  if (x < bq * D && ii < tq) {`,
    `    let e = x % D;`,
    `    var sum = 0.0;`,
    `    for (var z = 0u; z < lanes; z += 1u) {`,
    `      sum += part_max[rr * lanes + z];`,
    `    }`,
    `    ${s.write(out.buffer, plus(plus(ov.at, "ii", ov.strides[0]), "hd + e", ov.strides[1]), "acc[n] / select(1.0, sum, sum > 0.0)")}`,
    `  }`,
    `}`,
    ...(cache && sp.cache
      ? [
          `// Append: this block's new k and v rows i, head h's columns, at cache rows P + i.`,
          `for (var x = lid; x < bq * D; x += WG) {`,
          `  let ii = q0 + x / D;`,
          `  let e = x % D;`,
          `  if (ii < tq) {`,
          `    ${s.write(sp.cache.k.buffer, rowCol("kc_h", cache.k.strides, "past + ii", "e"), readK("ii", "e"))}`,
          `    ${s.write(sp.cache.v.buffer, rowCol("vc_h", cache.v.strides, "past + ii", "e"), readV("ii", "e"))}`,
          `  }`,
          `}`,
        ]
      : []),
  ];
  const count = symScale(symAdd(symOfDim(sp.q.shape[0]), symConst(t.bq - 1)), sp.heads);
  return s.finish({
    doc: [
      ...doc,
      `flash attention: ${sp.heads} heads of D = ${d}; a workgroup of ${t.wg} per (head, ${t.bq} query rows), keys in tiles of ${t.bk}, ${t.lanes} lanes per row`,
    ],
    workgroupSize: t.wg,
    workgroups: { count, per: t.bq },
    body,
    decls,
  });
}

/** (q [Tq, C], k [Tk, C], v [Tk, C], [mask [Tk]]) */
export function attention(s: WgslScope, b: Body<"attention">, doc: readonly string[]): WgslKernel {
  const [q, k, v, mask] = s.kernel.inputs;
  return flash(
    s,
    {
      heads: b.heads,
      scale: b.scale,
      causal: b.causal,
      q,
      k,
      v,
      mask: b.masked ? mask : undefined,
      cache: undefined,
    },
    doc,
  );
}

/** (q [T, C], k [T, C], v [T, C], k_cache [N, C], v_cache [N, C]), P cached rows. */
export function attentionCached(
  s: WgslScope,
  b: Body<"attention_cached">,
  doc: readonly string[],
): WgslKernel {
  const [q, k, v, kc, vc] = s.kernel.inputs;
  return flash(
    s,
    {
      heads: b.heads,
      scale: b.scale,
      causal: true,
      q,
      k,
      v,
      mask: undefined,
      cache: { k: kc, v: vc, past: s.dim(b.past) },
    },
    doc,
  );
}
