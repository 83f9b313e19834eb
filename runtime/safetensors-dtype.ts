/** The dtypes of the safetensors format and their conversion to Float32Array.
 *  What converts and what is refused is stated in the header of safetensors.ts. */

import { bf16ToF32, f16ToF32 } from "./half-float.ts";

/** Bits per element of every dtype the format defines (the reference crate's `Dtype`). */
export const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

export type SafetensorsDType = keyof typeof DTYPE_BITS;

type Bad = (detail: string) => never;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `raw` starts at an offset aligned for the dtype (a fresh buffer is); the host is
 *  little-endian. F32 comes back as a view of raw's bytes, every other dtype as a new array.
 *  `first` is the index of raw's first element in its tensor, for the messages: a tensor may be
 *  converted in pieces. */
export function toFloat32(
  raw: Uint8Array,
  dtype: SafetensorsDType,
  bad: Bad,
  first = 0,
): Float32Array {
  if (!LITTLE_ENDIAN_HOST) bad("kiln reads safetensors on little-endian hosts only");
  const view = <T>(C: new (b: ArrayBufferLike, at: number, n: number) => T, bytes: number): T =>
    new C(raw.buffer, raw.byteOffset, raw.byteLength / bytes);
  switch (dtype) {
    case "F32":
      return view(Float32Array, 4);
    case "F64":
      return exactly(
        view(Float64Array, 8),
        (v, f) => !Number.isFinite(v) || Number.isFinite(f),
        bad,
        OUT_OF_F32_RANGE,
        first,
      );
    case "F16":
      return f16ToF32(view(Uint16Array, 2));
    case "BF16":
      return bf16ToF32(view(Uint16Array, 2));
    case "BOOL":
      return exactly(raw, (v) => v <= 1, bad, "a BOOL byte must be 0 or 1", first);
    case "U8":
      return Float32Array.from(raw);
    case "I8":
      return Float32Array.from(view(Int8Array, 1));
    case "U16":
      return Float32Array.from(view(Uint16Array, 2));
    case "I16":
      return Float32Array.from(view(Int16Array, 2));
    case "U32":
      return exactly(view(Uint32Array, 4), (v, f) => v === f, bad, NOT_AN_F32, first);
    case "I32":
      return exactly(view(Int32Array, 4), (v, f) => v === f, bad, NOT_AN_F32, first);
    case "U64":
      return exactly(view(BigUint64Array, 8), (v, f) => BigInt(f) === v, bad, NOT_AN_F32, first);
    case "I64":
      return exactly(view(BigInt64Array, 8), (v, f) => BigInt(f) === v, bad, NOT_AN_F32, first);
    case "F4":
    case "F6_E2M3":
    case "F6_E3M2":
    case "F8_E5M2":
    case "F8_E4M3":
    case "F8_E8M0":
    case "F8_E4M3FNUZ":
    case "F8_E5M2FNUZ":
    case "C64":
      return bad(
        `dtype ${dtype} is not supported; kiln loads F64/F32/F16/BF16 and integer tensors only`,
      );
  }
}

const OUT_OF_F32_RANGE = "beyond the f32 range (kiln computes in f32)";
const NOT_AN_F32 = "not exactly an f32; kiln loads integer tensors only when every value is";

/** Converts element by element, refusing the first value `ok` rejects. */
function exactly<T extends number | bigint>(
  src: ArrayLike<T>,
  ok: (v: T, f: number) => boolean,
  bad: Bad,
  why: string,
  first: number,
): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    const f = Math.fround(Number(v));
    if (!ok(v, f)) bad(`element ${first + i} is ${v}: ${why}`);
    out[i] = f;
  }
  return out;
}
