/** erf in float64 to ~1e-15, for the exact GELU. JavaScript has no Math.erf.
 *  erf(x) = 2/√π · e^(−x²) · Σₙ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)) — every term positive, so no
 *  cancellation; beyond |x| = 6, erf is ±1 to double precision. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax;
  let sum = ax;
  for (let n = 1; n < 200; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  // Rounding in the long sum can land an ulp above 1 near |x| = 6; erf never exceeds 1.
  const r = Math.min(1, (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum);
  return x < 0 ? -r : r;
}
