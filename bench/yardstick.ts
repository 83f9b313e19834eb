/** The plain-JavaScript yardstick for the matmul figures: the classic hand-written 4×4
 *  register-blocked loop on row-major, unpacked b — what `shared/notes/peers.md` lists as "plain
 *  JS, 4×4 register blocking" (≈ 4.7 GFLOP/s on the 3.5 GHz AVX-512 machine it was measured on).
 *  A kernel's GFLOP/s depends on the machine; its ratio to this loop, timed alternately with it
 *  in the same process, much less. `kiln bench` and bench/matmul-kernel.ts both time it. */
import type { MatmulRun } from "./harness.ts";

/** Deterministic inputs in [-1, 1) (a linear congruential generator). */
export function randomMatrix(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

export interface Yardstick extends MatmulRun {
  /** Floating-point operations of one run. */
  readonly flops: number;
  /** The inputs (a [m, k], b [k, n], row-major) and the output c [m, n] `run` writes. */
  readonly a: Float32Array;
  readonly b: Float32Array;
  readonly c: Float32Array;
}

/** (m×k)·(k×n) by the 4×4 loop on random inputs; rows and columns past the last whole 4×4 block
 *  are left out (zero), so its flops are 2·⌊m/4⌋·4·k·⌊n/4⌋·4. */
export function plainJs4x4(m: number, k: number, n: number): Yardstick {
  const a = randomMatrix(m * k, 1);
  const b = randomMatrix(k * n, 2);
  const c = new Float32Array(m * n);
  // prettier-ignore
  const run = (): void => {
    for (let i = 0; i + 4 <= m; i += 4)
      for (let j = 0; j + 4 <= n; j += 4) {
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        const a0 = i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
        for (let p = 0, q = j; p < k; p++, q += n) {
          const x0 = a[a0 + p], x1 = a[a1 + p], x2 = a[a2 + p], x3 = a[a3 + p];
          const y0 = b[q], y1 = b[q + 1], y2 = b[q + 2], y3 = b[q + 3];
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        let o = i * n + j;
        c[o] = c00; c[o + 1] = c01; c[o + 2] = c02; c[o + 3] = c03; o += n;
        c[o] = c10; c[o + 1] = c11; c[o + 2] = c12; c[o + 3] = c13; o += n;
        c[o] = c20; c[o + 1] = c21; c[o + 2] = c22; c[o + 3] = c23; o += n;
        c[o] = c30; c[o + 1] = c31; c[o + 2] = c32; c[o + 3] = c33;
      }
  };
  return { run, flops: 2 * (m - (m % 4)) * k * (n - (n % 4)), a, b, c };
}
