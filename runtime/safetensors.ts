/** Reading .safetensors files (https://github.com/huggingface/safetensors); writing them is
 *  safetensors-write.ts.
 *
 *  Layout: u64 little-endian header length N, then N bytes of UTF-8 JSON — an object mapping each
 *  tensor name to {dtype, shape, data_offsets: [start, end]} plus an optional "__metadata__"
 *  string→string map, padded with spaces — then the data region, which the tensors tile exactly.
 *
 *  The reader validates at least as strictly as the reference Rust crate: header length bounded
 *  (100 MB) and checked before anything is decoded; header valid UTF-8, starting with '{'; every
 *  entry well-typed; element and byte counts computed without overflow (BigInt); byte length =
 *  elements × dtype size; after sorting by offsets the tensors tile the data region from 0 to its
 *  end with no gap, overlap or trailing byte. Stricter than the reference: a key that appears
 *  twice anywhere in the header is an error (the reference keeps one silently), and so is a tensor
 *  entry written as an array. Like the reference, unknown fields in a tensor entry are ignored and
 *  `"__metadata__": null` means no metadata.
 *
 *  Conversion to Float32Array (the original dtype stays in LoadedTensor.dtype):
 *  - F32 as is; F16 and BF16 exactly (every value, subnormals, ±inf and NaN included);
 *  - F64 rounded to nearest f32; a finite value beyond the f32 range is an error, not an infinity;
 *  - BOOL, U8, I8, U16, I16, U32, I32, U64, I64 converted when every value is exactly an f32
 *    (integers up to 2^24 always are; position-id buffers load); otherwise an error naming the
 *    tensor and the element. A BOOL byte other than 0 or 1 is an error.
 *  - F8_*, F6_*, F4 and C64 are refused: kiln loads real float and integer tensors only.
 *
 *  Reading: the bytes come from a ByteSource, which reads a range of the file into a buffer the
 *  reader gives it. readSafetensorsFile never holds the file whole: it reads the 8-byte length,
 *  then the header (its length checked against the limit and the file size before the buffer is
 *  made), then each tensor from the file descriptor straight into the tensor's own array — one
 *  copy for F32 — or, for a dtype that converts, in pieces of READ_CHUNK_BYTES through a small
 *  buffer. Peak memory is the tensors themselves plus one piece; files over 2 GiB load. Data
 *  may sit at any byte offset in the file: every read lands in a fresh, aligned buffer. */

import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { fail, KilnError } from "../compiler/errors.ts";
import { DTYPE_BITS, toFloat32, type SafetensorsDType } from "./safetensors-dtype.ts";
import { parseStrictJson, type JsonError, type JsonValue } from "./strict-json.ts";

export interface LoadedTensor {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface Safetensors {
  readonly tensors: ReadonlyMap<string, LoadedTensor>;
  readonly metadata: Readonly<Record<string, string>> | null;
}

/** The reference crate refuses headers larger than this. */
export const MAX_HEADER_BYTES = 100_000_000;
/** The header key of the file's string→string metadata. */
export const METADATA_KEY = "__metadata__";
const U64_MAX = (1n << 64n) - 1n;

export type { SafetensorsDType };

interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly start: bigint;
  readonly end: bigint;
}

/** A file's bytes, read a range at a time. */
export interface ByteSource {
  /** Its length in bytes. */
  readonly size: number;
  /** Fills `into` with the bytes at [position, position + into.length), which lie in the file. */
  read(into: Uint8Array, position: number): void;
}

/** Tensors that convert (every dtype but F32) are read and converted this many bytes at a time. */
export const READ_CHUNK_BYTES = 1 << 20;
/** One readSync reads at most this much (Node refuses lengths of 2 GiB and more). */
const MAX_READ_BYTES = 1 << 30;

/** Which tensors to read (the header is validated whole either way); default: all. */
export type TensorFilter = (name: string) => boolean;

/** Reads the file a tensor at a time from its descriptor; it is never held whole. */
export function readSafetensorsFile(path: string, only?: TensorFilter): Safetensors {
  const cannot = (e: unknown): never => {
    const code = e instanceof Error && "code" in e ? String(e.code) : "";
    if (code === "ENOENT") fail("safetensors", path, "file not found");
    if (code === "EISDIR")
      fail("safetensors", path, "is a directory, expected a .safetensors file");
    return fail(
      "safetensors",
      path,
      `cannot read file: ${e instanceof Error ? e.message : String(e)}`,
    );
  };
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    return cannot(e);
  }
  try {
    let size: number;
    try {
      const stat = fstatSync(fd);
      if (stat.isDirectory())
        fail("safetensors", path, "is a directory, expected a .safetensors file");
      size = stat.size;
    } catch (e) {
      if (e instanceof KilnError) throw e;
      return cannot(e);
    }
    return readSafetensors(fileSource(fd, size, path, cannot), path, only);
  } finally {
    closeSync(fd);
  }
}

function fileSource(
  fd: number,
  size: number,
  path: string,
  cannot: (e: unknown) => never,
): ByteSource {
  return {
    size,
    read(into, position) {
      for (let done = 0; done < into.length;) {
        let n: number;
        try {
          n = readSync(
            fd,
            into,
            done,
            Math.min(into.length - done, MAX_READ_BYTES),
            position + done,
          );
        } catch (e) {
          return cannot(e);
        }
        if (n === 0)
          fail(
            "safetensors",
            path,
            `the file ended at byte ${position + done} while it was read; did it change?`,
          );
        done += n;
      }
    },
  };
}

/** Bytes already in memory (a fetched file, a test's). */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    read: (into, position) => into.set(bytes.subarray(position, position + into.length)),
  };
}

export function parseSafetensors(bytes: Uint8Array, file: string): Safetensors {
  return readSafetensors(bytesSource(bytes), file);
}

export function readSafetensors(src: ByteSource, file: string, only?: TensorFilter): Safetensors {
  const bad = (detail: string): never => fail("safetensors", file, detail);
  if (src.size < 8) {
    bad(
      `file is ${src.size} bytes, too short for the 8-byte header length; not a safetensors file`,
    );
  }
  const prefix = new Uint8Array(8);
  src.read(prefix, 0);
  const n = new DataView(prefix.buffer).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    bad(
      `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit; not a safetensors file, or corrupt`,
    );
  }
  const headerEnd = 8 + Number(n);
  if (headerEnd > src.size) {
    bad(`header length ${n} runs past the end of the file (${src.size} bytes); truncated?`);
  }
  const headerBytes = new Uint8Array(Number(n));
  src.read(headerBytes, 8);
  if (headerBytes[0] !== 0x7b) bad("header must be a JSON object starting with '{'");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    return bad("header is not valid UTF-8");
  }
  const json = parseStrictJson(text);
  if (!json.ok) return bad(jsonErrorText(json.error));
  if (json.value.kind !== "object") return bad("header must be a JSON object");

  let metadata: Record<string, string> | null = null;
  const entries: TensorEntry[] = [];
  for (const [key, value] of json.value.entries) {
    if (key === METADATA_KEY) metadata = readMetadata(value, bad);
    else entries.push(readEntry(key, value, bad));
  }
  checkTiling(entries, src.size - headerEnd, bad);

  const tensors = new Map<string, LoadedTensor>();
  for (const e of entries) {
    if (only !== undefined && !only(e.name)) continue;
    const data = readTensor(src, headerEnd + Number(e.start), e, (d) =>
      bad(`tensor ${quote(e.name)}: ${d}`),
    );
    tensors.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/** One tensor's data, at byte `at` of the source, as float32: F32 read straight into the bytes
 *  of its own array; any other dtype read and converted a piece at a time (the first piece even
 *  when the tensor is empty, so an unsupported dtype is refused either way). */
function readTensor(src: ByteSource, at: number, e: TensorEntry, bad: Bad): Float32Array {
  const bytes = Number(e.end - e.start);
  const allocate = <T>(make: () => T, what: string): T => {
    try {
      return make();
    } catch (err) {
      if (err instanceof RangeError)
        return bad(`${what} do not fit in one array here (${err.message})`);
      throw err;
    }
  };
  if (e.dtype === "F32") {
    const raw = allocate(() => new Uint8Array(bytes), `${bytes} bytes`);
    src.read(raw, at);
    return toFloat32(raw, e.dtype, bad);
  }
  // Every dtype that converts has whole bytes per element, so a piece holds whole elements; a
  // sub-byte one is refused by its first piece, before the output is allocated.
  const elements = (bytes * 8) / DTYPE_BITS[e.dtype];
  let out: Float32Array | undefined;
  let done = 0;
  do {
    const raw = new Uint8Array(Math.min(READ_CHUNK_BYTES, bytes - done));
    src.read(raw, at + done);
    const first = (done * 8) / DTYPE_BITS[e.dtype];
    const part = toFloat32(raw, e.dtype, bad, first);
    out ??= allocate(() => new Float32Array(elements), `${elements} float32 values`);
    out.set(part, first);
    done += raw.length;
  } while (done < bytes);
  return out;
}

function jsonErrorText(e: JsonError): string {
  const at = `(at character ${e.offset} of the header)`;
  if (e.duplicateKey !== undefined && e.path.length === 0) {
    return e.duplicateKey === METADATA_KEY
      ? `__metadata__ appears twice in the header ${at}`
      : `tensor ${quote(e.duplicateKey)} appears twice in the header; readers disagree on which ` +
          `copy wins, so kiln refuses the file ${at}`;
  }
  const [top] = e.path;
  const within =
    top === undefined ? "" : top === METADATA_KEY ? " in __metadata__" : ` in tensor ${quote(top)}`;
  return `header is not valid JSON${within}: ${e.message} ${at}`;
}

type Bad = (detail: string) => never;

function readMetadata(value: JsonValue, bad: Bad): Record<string, string> | null {
  if (value.kind === "null") return null;
  if (value.kind !== "object")
    return bad(`__metadata__ must be an object of strings, got ${kindOf(value)}`);
  // A null prototype: a key such as "__proto__" or "constructor" is plain data here.
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of value.entries) {
    if (v.kind !== "string") bad(`__metadata__ ${quote(k)} must be a string, got ${kindOf(v)}`);
    else out[k] = v.value;
  }
  return out;
}

function readEntry(name: string, value: JsonValue, bad: Bad): TensorEntry {
  const where = `tensor ${quote(name)}`;
  if (value.kind !== "object") {
    return bad(
      `${where}: entry must be an object with dtype, shape and data_offsets, got ${kindOf(value)}`,
    );
  }
  const field = (key: string): JsonValue =>
    value.entries.get(key) ?? bad(`${where}: missing "${key}"`);

  const dtypeValue = field("dtype");
  if (dtypeValue.kind !== "string")
    return bad(`${where}: "dtype" must be a string, got ${kindOf(dtypeValue)}`);
  const dtype = dtypeValue.value;
  if (!Object.hasOwn(DTYPE_BITS, dtype)) {
    return bad(
      `${where}: unknown dtype ${quote(dtype)} (safetensors defines ${Object.keys(DTYPE_BITS).join(", ")})`,
    );
  }
  const shapeValue = field("shape");
  if (shapeValue.kind !== "array")
    return bad(`${where}: "shape" must be an array, got ${kindOf(shapeValue)}`);
  const shape = shapeValue.items.map((v, i) => {
    const d = readUint(v, `${where}: shape[${i}]`, bad);
    if (d > BigInt(Number.MAX_SAFE_INTEGER))
      bad(`${where}: shape[${i}] is ${d}, larger than kiln can index`);
    return Number(d);
  });
  const offsets = field("data_offsets");
  if (offsets.kind !== "array" || offsets.items.length !== 2) {
    return bad(`${where}: "data_offsets" must be an array [start, end] of two integers`);
  }
  const start = readUint(offsets.items[0], `${where}: data_offsets[0]`, bad);
  const end = readUint(offsets.items[1], `${where}: data_offsets[1]`, bad);
  if (end < start) bad(`${where}: data_offsets [${start}, ${end}] end before they start`);

  const entry: TensorEntry = { name, dtype: dtype as SafetensorsDType, shape, start, end };
  checkByteLength(entry, bad);
  return entry;
}

/** A JSON number that must be a non-negative integer, exactly, as a BigInt. */
function readUint(v: JsonValue, what: string, bad: Bad): bigint {
  if (v.kind !== "number") return bad(`${what} must be a non-negative integer, got ${kindOf(v)}`);
  if (!/^[0-9]+$/.test(v.text))
    return bad(`${what} is ${clip(v.text)}; it must be a non-negative integer`);
  // More than 20 digits exceeds u64 for sure; never hand BigInt a huge digit string.
  if (v.text.length > 20 || BigInt(v.text) > U64_MAX)
    return bad(`${what} is ${clip(v.text)}, beyond 64 bits`);
  return BigInt(v.text);
}

/** elements × bits / 8 must equal end − start; every product is checked against u64 as it grows. */
function checkByteLength(e: TensorEntry, bad: Bad): void {
  const where = `tensor ${quote(e.name)}`;
  const shapeText = `[${e.shape.join(",")}]`;
  let elements = 1n;
  for (const d of e.shape) {
    elements *= BigInt(d);
    if (elements > U64_MAX)
      bad(`${where}: shape ${shapeText} has more elements than a 64-bit count can hold`);
  }
  const bits = elements * BigInt(DTYPE_BITS[e.dtype]);
  if (bits > U64_MAX)
    bad(`${where}: shape ${shapeText} × ${e.dtype} needs more bytes than a 64-bit size can hold`);
  if (bits % 8n !== 0n)
    bad(`${where}: shape ${shapeText} × ${e.dtype} does not end on a byte boundary`);
  const have = e.end - e.start;
  if (bits / 8n !== have) {
    bad(
      `${where}: shape ${shapeText} × ${e.dtype} needs ${bits / 8n} bytes but offsets give ${have}`,
    );
  }
}

/** Sorted by (start, end), the tensors must tile [0, dataLength) exactly. */
function checkTiling(entries: readonly TensorEntry[], dataLength: number, bad: Bad): void {
  const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
  const sorted = [...entries].sort((a, b) => cmp(a.start, b.start) || cmp(a.end, b.end));
  let covered = 0n;
  let prev: TensorEntry | undefined;
  for (const e of sorted) {
    const where = `tensor ${quote(e.name)}: data_offsets [${e.start}, ${e.end}]`;
    if (prev !== undefined && e.start < covered) {
      bad(`${where} overlap tensor ${quote(prev.name)} [${prev.start}, ${prev.end}]`);
    }
    if (e.start > covered) {
      bad(
        prev === undefined
          ? `${where} leave bytes [0, ${e.start}) unused; the first tensor must start at 0`
          : `${where} leave a gap of ${e.start - covered} bytes after tensor ${quote(prev.name)}`,
      );
    }
    if (e.end > BigInt(dataLength)) {
      bad(
        `${where} run past the end of the file (${dataLength} data bytes after the header); truncated?`,
      );
    }
    covered = e.end;
    prev = e;
  }
  const extra = BigInt(dataLength) - covered;
  if (extra > 0n) {
    bad(
      `${extra} trailing byte${extra === 1n ? "" : "s"} after the last tensor ` +
        `(tensors cover ${covered} of ${dataLength} data bytes)`,
    );
  }
}

function kindOf(v: JsonValue): string {
  return v.kind === "number"
    ? `number ${clip(v.text)}`
    : v.kind === "string"
      ? `string ${quote(v.value)}`
      : v.kind;
}

/** Names and values come from the file and may be megabytes long. */
function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

export function quote(s: string): string {
  return JSON.stringify(clip(s));
}
