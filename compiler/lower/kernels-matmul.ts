/** The matmul and attention families in the Program interpreter.
 *  matmul: per output element, the dot product over K in order, then the epilogue expression
 *  of the accumulator and the extras at that element.
 *  attention: per head and query row, an online softmax over the keys (flash-style): a running
 *  max m and sum l, the accumulator rescaled by exp(m_old − m_new) whenever the max grows. No
 *  [Tq,Tk] score buffer exists. Key j is hidden from query i when j > i + (Tk − Tq) (causal: with
 *  a KV cache, Tk − Tq is the cached length P) or when mask[j] ≠ 0; hidden keys are never read,
 *  so whatever they hold (NaN, 1e10) cannot leak. A query that sees no key gets zeros. */
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

export function attention(
  s: AttentionSpec,
  [q, k, v, mask]: readonly (Strided | undefined)[],
  out: Strided,
): void {
  if (!q || !k || !v) throw new Error("attention needs q, k and v");
  const [tq, c] = q.shape;
  const tk = k.shape[0];
  const d = c / s.heads;
  const acc = new Float64Array(d);
  const [qr, qc, kr, kc, vr, vc] = [q, k, v].flatMap((x) => x.strides);
  for (let h = 0; h < s.heads; h++)
    for (let i = 0; i < tq; i++) {
      let m = -Infinity;
      let l = 0;
      acc.fill(0);
      const qi = q.offset + i * qr + h * d * qc;
      const last = s.causal ? Math.min(tk - 1, i + (tk - tq)) : tk - 1;
      for (let j = 0; j <= last; j++) {
        if (mask && mask.data[mask.offset + j * mask.strides[0]] !== 0) continue;
        const kj = k.offset + j * kr + h * d * kc;
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
        const vj = v.offset + j * vr + h * d * vc;
        for (let e = 0; e < d; e++) acc[e] += p * v.data[vj + e * vc];
      }
      const oi = out.offset + i * out.strides[0] + h * d * out.strides[1];
      for (let e = 0; e < d; e++) out.data[oi + e * out.strides[1]] = l === 0 ? 0 : acc[e] / l;
    }
}
