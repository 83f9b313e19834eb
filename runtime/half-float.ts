/** Exact conversions between 16-bit floats and JavaScript numbers.
 *  F16 is IEEE binary16 (1 sign, 5 exponent, 10 mantissa bits); BF16 is the top 16 bits of an f32
 *  (1, 8, 7). Decoding is exact for every bit pattern. Encoding rounds a float64 straight to the
 *  16-bit format, to nearest with ties to even — going through f32 first would round twice and can
 *  land on the wrong side of a tie. Overflow gives ±infinity, NaN a quiet NaN, and the sign of
 *  zero is kept. */

export function f16ToF32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  const out = new Float32Array(bits.buffer);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f)
      bits[i] = sign | 0x7f800000 | (mant << 13); // inf, NaN (payload kept)
    else if (exp !== 0)
      bits[i] = sign | ((exp + 112) << 23) | (mant << 13); // rebias 15 → 127
    else out[i] = (sign ? -mant : mant) * 2 ** -24; // zero and subnormals, exact in f32
  }
  return out;
}

export function bf16ToF32(src: Uint16Array): Float32Array {
  const bits = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return new Float32Array(bits.buffer);
}

export function toF16Bits(x: number): number {
  return roundToHalf(x, 5, 10);
}

export function toBf16Bits(x: number): number {
  return roundToHalf(x, 8, 7);
}

/** Rounds x to a 16-bit float with `expBits` exponent and `mantBits` mantissa bits. */
function roundToHalf(x: number, expBits: number, mantBits: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const inf = ((1 << expBits) - 1) << mantBits;
  if (Number.isNaN(x)) return inf | (1 << (mantBits - 1)); // quiet NaN
  const a = Math.abs(x);
  if (a === Infinity) return sign | inf;
  if (a === 0) return sign;
  const bias = (1 << (expBits - 1)) - 1;
  const emin = 1 - bias;
  if (a >= 2 ** (bias + 1)) return sign | inf;
  let e = Math.floor(Math.log2(a)); // log2 may be off by one next to a power of two
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  e = Math.max(e, emin); // below the normal range, subnormals share the smallest exponent's step
  // m: the significand in units of the last place, 2^mantBits ≤ m ≤ 2^(mantBits+1) when normal.
  const q = a * 2 ** (mantBits - e); // exact: a power-of-two scale
  const floor = Math.floor(q);
  const rest = q - floor;
  const m = rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
  // Adding m carries a rounded-up significand into the exponent, and the largest into infinity.
  return sign | Math.min(((e - emin) << mantBits) + m, inf);
}
