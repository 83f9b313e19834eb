/** The matmul and attention families in the Program interpreter.
 *  matmul: per output element, the dot product over K in order, then the epilogue expression
 *  of the accumulator and the extras at that element.
 *  attention: per head and query row, an online softmax over the keys (flash-style): a running
 *  max m and sum l, the accumulator rescaled by exp(m_old − m_new) whenever the max grows. No
 *  [Tq,Tk] score buffer exists. Key j is hidden from query i when j > i + (Tk − Tq) (causal: with
 *  a KV cache, Tk − Tq is the cached length P) or when mask[j] ≠ 0; hidden keys are never read,
 *  so whatever they hold (NaN, 1e10) cannot leak. A query that sees no key gets zeros.
 *  attention_cached: the same over keys [0, P) from the cache buffers and [P, P+T) from the new
 *  rows; each work item then appends its head's slice of new k and v row i at cache row P + i,
 *  after its own reads, which never touch rows ≥ P. */
import { evalExpr, type Expr } from "../ir/expr.ts";
import { walk, type Strided } from "./strided.ts";

export function matmul(
  transposeB: boolean,
  expr: Expr,
  [a, b, ...extras]: readonly Strided[],
  out: Strided,
): void {
  const r = out.shape.length;
  const [M, N] = [out.shape[r - 2], out.shape[r - 1]];
  const K = a.shape[r - 1];
  const batch = out.shape.slice(0, r - 2);
  const outer = (v: Strided) => ({ offset: v.offset, strides: v.strides.slice(0, r - 2) });
  const [am, ak] = [a.strides[r - 2], a.strides[r - 1]];
  const [bk, bn] = transposeB
    ? [b.strides[r - 1], b.strides[r - 2]]
    : [b.strides[r - 2], b.strides[r - 1]];
  const [om, on] = [out.strides[r - 2], out.strides[r - 1]];
  const args = new Array<number>(extras.length);
  const plain = expr.k === "acc";
  walk(batch, [out, a, b, ...extras].map(outer), (_t, [o, pa, pb, ...pe]) => {
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let acc = 0;
        for (let k = 0; k < K; k++)
          acc += a.data[pa + i * am + k * ak] * b.data[pb + k * bk + j * bn];
        for (let e = 0; e < extras.length; e++) {
          const x = extras[e];
          args[e] = x.data[pe[e] + i * x.strides[r - 2] + j * x.strides[r - 1]];
        }
        out.data[o + i * om + j * on] = plain ? acc : evalExpr(expr, args, acc);
      }
  });
}

export interface AttentionSpec {
  readonly heads: number;
  readonly scale: number;
  readonly causal: boolean;
}

/** Keys (and their values) as row blocks: key j is row j − (rows of the blocks before) of the
 *  block it falls in. */
interface KeyBlock {
  readonly k: Strided;
  readonly v: Strided;
  readonly rows: number;
}

export function attention(
  s: AttentionSpec,
  [q, k, v, mask]: readonly (Strided | undefined)[],
  out: Strided,
): void {
  if (!q || !k || !v) throw new Error("attention needs q, k and v");
  attend(s, q, [{ k, v, rows: k.shape[0] }], mask, out);
}

/** (q, k, v, k_cache, v_cache): keys [0, P) from the caches, [P, P+T) from k and v; the work
 *  item (h, i) then copies its head's columns of k and v row i to cache row P + i. */
export function attentionCached(
  s: { readonly heads: number; readonly scale: number },
  past: number,
  [q, k, v, kc, vc]: readonly Strided[],
  out: Strided,
): void {
  const d = q.shape[1] / s.heads;
  const blocks = [
    { k: kc, v: vc, rows: past },
    { k, v, rows: k.shape[0] },
  ];
  attend({ ...s, causal: true }, q, blocks, undefined, out, (h, i) => {
    for (const [from, to] of [
      [k, kc],
      [v, vc],
    ]) {
      const src = from.offset + i * from.strides[0] + h * d * from.strides[1];
      const dst = to.offset + (past + i) * to.strides[0] + h * d * to.strides[1];
      for (let e = 0; e < d; e++)
        to.data[dst + e * to.strides[1]] = from.data[src + e * from.strides[1]];
    }
  });
}

/** One work item per head h and query row i; `done(h, i)` runs at the end of each. */
function attend(
  s: AttentionSpec,
  q: Strided,
  blocks: readonly KeyBlock[],
  mask: Strided | undefined,
  out: Strided,
  done?: (h: number, i: number) => void,
): void {
  const [tq, c] = q.shape;
  const tk = blocks.reduce((n, b) => n + b.rows, 0);
  const d = c / s.heads;
  const acc = new Float64Array(d);
  const [qr, qc] = q.strides;
  for (let h = 0; h < s.heads; h++)
    for (let i = 0; i < tq; i++) {
      let m = -Infinity;
      let l = 0;
      acc.fill(0);
      const qi = q.offset + i * qr + h * d * qc;
      const last = s.causal ? Math.min(tk - 1, i + (tk - tq)) : tk - 1;
      let first = 0; // the key index of the block's row 0
      for (const { k, v, rows } of blocks) {
        const [kr, kc, vr, vc] = [...k.strides, ...v.strides];
        for (let j = first; j < first + rows && j <= last; j++) {
          if (mask && mask.data[mask.offset + j * mask.strides[0]] !== 0) continue;
          const kj = k.offset + (j - first) * kr + h * d * kc;
          let dot = 0;
          for (let e = 0; e < d; e++) dot += q.data[qi + e * qc] * k.data[kj + e * kc];
          const score = dot * s.scale;
          if (score === -Infinity) continue; // weight exp(−∞) = 0
          if (score > m) {
            const f = Math.exp(m - score);
            l *= f;
            for (let e = 0; e < d; e++) acc[e] *= f;
            m = score;
          }
          const p = Math.exp(score - m);
          l += p;
          const vj = v.offset + (j - first) * vr + h * d * vc;
          for (let e = 0; e < d; e++) acc[e] += p * v.data[vj + e * vc];
        }
        first += rows;
      }
      const oi = out.offset + i * out.strides[0] + h * d * out.strides[1];
      for (let e = 0; e < d; e++) out.data[oi + e * out.strides[1]] = l === 0 ? 0 : acc[e] / l;
      done?.(h, i);
    }
}
