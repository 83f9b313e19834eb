/** The attention family as TypeScript: one work item per head h and query row i, an online
 *  softmax over the keys (a running max m and sum l; the accumulator is rescaled by
 *  exp(m_old − m_new) when the max grows), q, k and v read in place through their strides (the
 *  thirds of a merged projection, a source's K/V). No [Tq, Tk] scores exist. Key j is hidden from
 *  query i when j > i + (Tk − Tq) (causal) or mask[j] ≠ 0; hidden keys are never read, so NaN or
 *  1e10 there cannot leak; a query that sees no key gets zeros. As the Program interpreter
 *  (compiler/lower/kernels-matmul.ts `attend`) computes it.
 *  attention_cached: keys [0, P) from the cache buffers, [P, P+T) from the new k and v rows;
 *  each work item then copies its head's slice of k and v row i to cache row P + i (its own
 *  reads never touch rows ≥ P). */
import type { KernelBody, View } from "../../lower/program.ts";
import { renderNumber } from "../expr-source.ts";
import { functionSource, type KernelFunction, type Scope } from "./kernel.ts";
import { plus, rowMajor } from "./source.ts";

type Body<K extends KernelBody["kind"]> = Extract<KernelBody, { kind: K }>;

function outputView(s: Scope): View {
  const b = s.program.buffers[s.kernel.output];
  return { buffer: b.id, offset: [], shape: b.shape, strides: rowMajor(b.shape) };
}

/** A block of keys: rows [first, first + rows) of the key sequence, read from `k` and `v`. */
interface Block {
  readonly k: string;
  readonly v: string;
  /** Row strides, column strides (rendered). */
  readonly kr: string;
  readonly kc: string;
  readonly vr: string;
  readonly vc: string;
  /** The key index of the block's row 0, and the end of its range (exclusive), rendered. */
  readonly first: string;
  readonly end: string;
}

/** The loop over one block of keys for query row i, updating m, l and acc. */
function keyLoop(b: Block, qc: string, masked: boolean, ms: string, scale: string): string[] {
  const row = (base: string, j: string, r: string) => plus(base, j, r);
  const rel = b.first === "0" ? "j" : `j - ${b.first}`;
  const col = (c: string) => (c === "1" ? "e" : `e * ${c}`);
  return [
    `for (let j = ${b.first}; j < ${b.end}; j++) {`,
    ...(masked ? [`  if (mask[${plus("mask_at", "j", ms)}] !== 0) continue;`] : []),
    `  const kj = ${row(`${b.k}h`, rel, b.kr)};`,
    `  let dot = 0;`,
    `  for (let e = 0; e < D; e++) dot += q[qi + ${col(qc)}] * ${b.k}[kj + ${col(b.kc)}];`,
    `  const score = dot${scale};`,
    `  if (score === -Infinity) continue; // weight exp(−∞) = 0`,
    `  if (score > m) {`,
    `    const f = Math.exp(m - score);`,
    `    l *= f;`,
    `    for (let e = 0; e < D; e++) acc[e] *= f;`,
    `    m = score;`,
    `  }`,
    `  const p = Math.exp(score - m);`,
    `  l += p;`,
    `  const vj = ${row(`${b.v}h`, rel, b.vr)};`,
    `  for (let e = 0; e < D; e++) acc[e] += p * ${b.v}[vj + ${col(b.vc)}];`,
    `}`,
  ];
}

/** The shared frame: per head and query row, the blocks' key loops, then the normalized row. */
function frame(
  heads: number,
  c: number,
  tq: string,
  tk: string,
  causal: boolean,
  strides: { qr: string; qc: string },
  heads0: readonly string[],
  blocks: readonly string[],
  after: readonly string[],
): string[] {
  const d = c / heads;
  return [
    `const H = ${heads};`,
    `const D = ${d};`,
    `const Tq = ${tq};`,
    `const Tk = ${tk};`,
    `const acc = new Float64Array(D);`,
    `for (let h = 0; h < H; h++) {`,
    ...heads0.map((l) => `  ${l}`),
    `  for (let i = 0; i < Tq; i++) {`,
    `    let m = -Infinity;`,
    `    let l = 0;`,
    `    acc.fill(0);`,
    `    const qi = ${plus(plus("q_at", "i", strides.qr), "h * D", strides.qc)};`,
    `    const last = ${causal ? "Math.min(Tk - 1, i + (Tk - Tq))" : "Tk - 1"}; // the last key query i sees`,
    ...blocks.map((l) => `    ${l}`),
    `    const oi = out_at + i * ${c} + h * D;`,
    `    for (let e = 0; e < D; e++) out[oi + e] = l === 0 ? 0 : acc[e] / l;`,
    ...after.map((l) => `    ${l}`),
    `  }`,
    `}`,
  ];
}

const scaleOf = (x: number) => (x === 1 ? "" : ` * ${renderNumber(x, "ts")}`);

/** (q [Tq, C], k [Tk, C], v [Tk, C], [mask [Tk]]) */
export function attention(s: Scope, b: Body<"attention">, doc: readonly string[]): KernelFunction {
  const [q, k, v, mask] = s.kernel.inputs;
  const out = outputView(s);
  const c = out.shape[1];
  if (typeof c !== "number") throw new Error(`${s.kernel.name}: attention needs a static width`);
  const st = (x: View, ax: number) => s.sym(x.strides[ax]);
  const block: Block = {
    k: "k",
    v: "v",
    kr: st(k, 0),
    kc: st(k, 1),
    vr: st(v, 0),
    vc: st(v, 1),
    first: "0",
    end: "last + 1",
  };
  const lines = frame(
    b.heads,
    c,
    s.dim(q.shape[0]),
    s.dim(k.shape[0]),
    b.causal,
    { qr: st(q, 0), qc: st(q, 1) },
    [
      `const kh = ${plus("k_at", "h * D", block.kc)};`,
      `const vh = ${plus("v_at", "h * D", block.vc)};`,
    ],
    keyLoop(block, st(q, 1), b.masked, b.masked ? st(mask, 0) : "0", scaleOf(b.scale)),
    [],
  );
  const params = [
    ...s.operand("q", q),
    ...s.operand("k", k),
    ...s.operand("v", v),
    ...(b.masked ? s.operand("mask", mask) : []),
    ...s.operand("out", out),
  ];
  const all = [...params, ...s.dimParams()];
  return {
    name: s.kernel.name,
    params: all,
    helpers: new Set(),
    source: functionSource(s.kernel.name, doc, all, lines),
  };
}

/** (q [T, C], k [T, C], v [T, C], k_cache [N, C], v_cache [N, C]), P cached rows. */
export function attentionCached(
  s: Scope,
  b: Body<"attention_cached">,
  doc: readonly string[],
): KernelFunction {
  const [q, k, v, kc, vc] = s.kernel.inputs;
  const out = outputView(s);
  const c = out.shape[1];
  if (typeof c !== "number") throw new Error(`${s.kernel.name}: attention needs a static width`);
  const st = (x: View, ax: number) => s.sym(x.strides[ax]);
  const past = s.dim(b.past);
  const cached: Block = {
    k: "kc",
    v: "vc",
    kr: st(kc, 0),
    kc: st(kc, 1),
    vr: st(vc, 0),
    vc: st(vc, 1),
    first: "0",
    end: "Math.min(P, last + 1)",
  };
  const fresh: Block = {
    k: "k",
    v: "v",
    kr: st(k, 0),
    kc: st(k, 1),
    vr: st(v, 0),
    vc: st(v, 1),
    first: "P",
    end: "last + 1",
  };
  const col = (x: string) => (x === "1" ? "e" : `e * ${x}`);
  const lines = [
    `const P = ${past}; // cached rows`,
    ...frame(
      b.heads,
      c,
      s.dim(q.shape[0]),
      `P + ${s.dim(k.shape[0])}`,
      true,
      { qr: st(q, 0), qc: st(q, 1) },
      [
        `const kch = ${plus("kc_at", "h * D", cached.kc)};`,
        `const vch = ${plus("vc_at", "h * D", cached.vc)};`,
        `const kh = ${plus("k_at", "h * D", fresh.kc)};`,
        `const vh = ${plus("v_at", "h * D", fresh.vc)};`,
      ],
      [
        `// keys [0, P): the cache`,
        ...keyLoop(cached, st(q, 1), false, "0", scaleOf(b.scale)),
        `// keys [P, P + T): this step's rows`,
        ...keyLoop(fresh, st(q, 1), false, "0", scaleOf(b.scale)),
      ],
      [
        `// append this head's slice of k and v row i at cache row P + i`,
        `const ki = ${plus("kh", "i", fresh.kr)};`,
        `const vi = ${plus("vh", "i", fresh.vr)};`,
        `const kci = ${plus("kch", "P + i", cached.kr)};`,
        `const vci = ${plus("vch", "P + i", cached.vr)};`,
        `for (let e = 0; e < D; e++) {`,
        `  kc[kci + ${col(cached.kc)}] = k[ki + ${col(fresh.kc)}];`,
        `  vc[vci + ${col(cached.vc)}] = v[vi + ${col(fresh.vc)}];`,
        `}`,
      ],
    ),
  ];
  const params = [
    ...s.operand("q", q),
    ...s.operand("k", k),
    ...s.operand("v", v),
    ...s.operand("kc", kc),
    ...s.operand("vc", vc),
    ...s.operand("out", out),
  ];
  const all = [...params, ...s.dimParams()];
  return {
    name: s.kernel.name,
    params: all,
    helpers: new Set(),
    source: functionSource(s.kernel.name, doc, all, lines),
  };
}
