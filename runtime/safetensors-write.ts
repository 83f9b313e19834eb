/** Writing .safetensors files in the reference crate's layout (the reader, and the format, are
 *  safetensors.ts): for tests, fixtures and random checkpoints. Refuses what the reader would
 *  refuse — a reserved or non-Unicode name, a name twice, a shape that does not match the data —
 *  with a typed error naming the tensor. */
import { fail } from "../compiler/errors.ts";
import { toBf16Bits, toF16Bits } from "./half-float.ts";
import { METADATA_KEY, quote } from "./safetensors.ts";

export type WritableDType = "F32" | "F16" | "BF16";

export interface WritableTensor {
  name: string;
  dtype: WritableDType;
  shape: readonly number[];
  data: ArrayLike<number>;
}

type Bad = (detail: string) => never;

/** The reference crate's layout: tensors by descending dtype alignment, then by name (UTF-8 byte
 *  order); header padded with spaces to a multiple of 8 so the data region starts aligned. */
export function writeSafetensors(
  tensors: ReadonlyArray<WritableTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const bad = (detail: string): never => fail("safetensors", "writeSafetensors", detail);
  const names = new Set<string>();
  for (const t of tensors) checkWritable(t, names, bad);
  const rank: Record<WritableDType, number> = { F32: 0, BF16: 1, F16: 2 };
  const utf8 = new TextEncoder();
  const order = [...tensors].sort(
    (a, b) =>
      rank[a.dtype] - rank[b.dtype] || Buffer.compare(utf8.encode(a.name), utf8.encode(b.name)),
  );

  const fields: string[] = [];
  if (metadata !== undefined) {
    const pairs = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== "string") bad(`__metadata__ ${quote(k)} must be a string, got ${typeof v}`);
      if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v))
        bad(`__metadata__ ${quote(k)} is not valid Unicode`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    fields.push(`"${METADATA_KEY}":{${pairs.join(",")}}`);
  }
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const t of order) {
    const blob = encode(t);
    fields.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],` +
        `"data_offsets":[${offset},${offset + blob.length}]}`,
    );
    blobs.push(blob);
    offset += blob.length;
  }
  let header = utf8.encode(`{${fields.join(",")}}`);
  const padded = Math.ceil(header.length / 8) * 8;
  header = utf8.encode(`{${fields.join(",")}}${" ".repeat(padded - header.length)}`);

  const out = new Uint8Array(8 + header.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  let at = 8 + header.length;
  for (const blob of blobs) {
    out.set(blob, at);
    at += blob.length;
  }
  return out;
}

/** Paired surrogates are one code point under /u; only a lone one matches. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

function checkWritable(t: WritableTensor, names: Set<string>, bad: Bad): void {
  const where = `tensor ${quote(t.name)}`;
  if (t.name === METADATA_KEY) bad(`${where}: the name is reserved for metadata`);
  if (LONE_SURROGATE.test(t.name)) bad(`${where}: the name is not valid Unicode (lone surrogate)`);
  if (names.has(t.name)) bad(`${where} appears twice`);
  names.add(t.name);
  if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") {
    bad(`${where}: kiln writes F32, F16 and BF16 only, not ${String(t.dtype)}`);
  }
  let elements = 1;
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      bad(`${where}: shape [${t.shape.join(",")}] has a bad dimension ${d}`);
    elements *= d;
  }
  if (elements !== t.data.length) {
    bad(
      `${where}: shape [${t.shape.join(",")}] holds ${elements} elements but data has ${t.data.length}`,
    );
  }
}

function encode(t: WritableTensor): Uint8Array {
  if (t.dtype === "F32") return new Uint8Array(Float32Array.from(t.data).buffer);
  const bits = new Uint16Array(t.data.length);
  const round = t.dtype === "F16" ? toF16Bits : toBf16Bits;
  for (let i = 0; i < bits.length; i++) bits[i] = round(t.data[i]);
  return new Uint8Array(bits.buffer);
}
