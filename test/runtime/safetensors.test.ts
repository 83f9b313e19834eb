import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KilnError } from "../../compiler/errors.ts";
import { toBf16Bits, toF16Bits } from "../../runtime/half-float.ts";
import {
  parseSafetensors,
  READ_CHUNK_BYTES,
  readSafetensorsFile,
} from "../../runtime/safetensors.ts";
import { writeSafetensors, type WritableTensor } from "../../runtime/safetensors-write.ts";

const FILE = "ckpt/model.safetensors";

/** A file by hand: u64 LE header length (`declared`, or the header's real length), header, data. */
function build(header: string | Uint8Array, data: ArrayLike<number> = [], declared?: bigint) {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declared ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** Little-endian bytes of values in a dtype a typed array can hold. */
function bytesOf(values: ArrayBufferView): number[] {
  return [...new Uint8Array(values.buffer, values.byteOffset, values.byteLength)];
}

function entry(dtype: string, shape: number[], start: number, end: number): string {
  return JSON.stringify({ dtype, shape, data_offsets: [start, end] });
}

function expectFailure(bytes: Uint8Array, ...parts: string[]): KilnError {
  let caught: unknown;
  try {
    parseSafetensors(bytes, FILE);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(KilnError);
  const err = caught as KilnError;
  expect(err.kind).toBe("safetensors");
  expect(err.where).toBe(FILE);
  expect(err.message).toContain(FILE);
  for (const p of parts) expect(err.message).toContain(p);
  return err;
}

/** Same value, NaN equal to NaN, +0 distinct from -0. */
function expectSameFloats(actual: Float32Array, expected: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    if (!Object.is(actual[i], expected[i])) {
      expect.fail(`element ${i}: got ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** IEEE binary16 value of a bit pattern, from the definition. */
function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * mant * 2 ** -24;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function bf16Value(h: number): number {
  const v = new DataView(new ArrayBuffer(4));
  v.setUint32(0, h << 16);
  return v.getFloat32(0);
}

function roundTrip(tensors: WritableTensor[], metadata?: Record<string, string>) {
  return parseSafetensors(writeSafetensors(tensors, metadata), FILE);
}

describe("writeSafetensors → parseSafetensors", () => {
  it("round-trips F32 exactly, including -0, subnormals, infinities and NaN", () => {
    const values = [0, -0, 1, -1.5, 3.4028234663852886e38, 1e-45, -2.5e-40, Infinity, -Infinity];
    const t = roundTrip([{ name: "w", dtype: "F32", shape: [3, 3], data: values }]).tensors.get(
      "w",
    );
    expect(t?.dtype).toBe("F32");
    expect(t?.shape).toEqual([3, 3]);
    expectSameFloats(t!.data, values.map(Math.fround));
    expect(
      Number.isNaN(
        roundTrip([{ name: "n", dtype: "F32", shape: [1], data: [NaN] }]).tensors.get("n")!.data[0],
      ),
    ).toBe(true);
  });

  it("round-trips F16 values, rounding to nearest even and saturating to infinity", () => {
    const cases: [number, number][] = [
      [0, 0],
      [-0, -0],
      [1, 1],
      [-2, -2],
      [65504, 65504],
      [-65504, -65504],
      [65519.99, 65504],
      [65520, Infinity], // halfway past the largest finite value
      [1e6, Infinity],
      [-1e6, -Infinity],
      [2 ** -24, 2 ** -24], // smallest subnormal
      [-(2 ** -24), -(2 ** -24)],
      [1023 * 2 ** -24, 1023 * 2 ** -24], // largest subnormal
      [2 ** -14, 2 ** -14], // smallest normal
      [2 ** -25, 0], // tie between 0 and the smallest subnormal: even is 0
      [3 * 2 ** -26, 2 ** -24],
      [1 + 2 ** -11, 1], // tie: even mantissa wins
      [1 + 3 * 2 ** -11, 1 + 2 ** -9],
      [1 + 2 ** -11 + 2 ** -30, 1 + 2 ** -10], // just past the tie; via f32 it would round down
      [0.1, 0.0999755859375],
      [Infinity, Infinity],
      [-Infinity, -Infinity],
    ];
    const data = cases.map(([x]) => x);
    const t = roundTrip([{ name: "h", dtype: "F16", shape: [data.length], data }]).tensors.get("h");
    expect(t?.dtype).toBe("F16");
    expectSameFloats(
      t!.data,
      cases.map(([, y]) => y),
    );
    expect(toF16Bits(NaN) & 0x7fff).toBe(0x7e00);
  });

  it("round-trips BF16 values, rounding to nearest even", () => {
    const max = (2 - 2 ** -7) * 2 ** 127;
    const cases: [number, number][] = [
      [1, 1],
      [-1, -1],
      [-0, -0],
      [3.140625, 3.140625],
      [Math.PI, 3.140625],
      [2 ** -133, 2 ** -133], // smallest subnormal
      [2 ** -126, 2 ** -126],
      [max, max],
      [(2 - 2 ** -8) * 2 ** 127, Infinity], // halfway past the largest finite value
      [1 + 2 ** -8, 1],
      [1 + 3 * 2 ** -8, 1 + 2 ** -6],
      [1 + 2 ** -8 + 2 ** -40, 1 + 2 ** -7],
      [-Infinity, -Infinity],
    ];
    const data = cases.map(([x]) => x);
    const t = roundTrip([{ name: "b", dtype: "BF16", shape: [data.length], data }]).tensors.get(
      "b",
    );
    expectSameFloats(
      t!.data,
      cases.map(([, y]) => y),
    );
    expect(Number.isNaN(bf16Value(toBf16Bits(NaN)))).toBe(true);
  });

  it("decodes every F16 and BF16 bit pattern exactly", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const header = `{"h":${entry("F16", [65536], 0, 131072)},"b":${entry("BF16", [65536], 131072, 262144)}}`;
    const parsed = parseSafetensors(build(header, [...bytesOf(all), ...bytesOf(all)]), FILE);
    const h = parsed.tensors.get("h")!.data;
    const b = new Uint32Array(parsed.tensors.get("b")!.data.buffer);
    for (let i = 0; i < 65536; i++) {
      const want = f16Value(i);
      if (!Object.is(h[i], want)) expect.fail(`F16 0x${i.toString(16)}: got ${h[i]}, want ${want}`);
      if (b[i] !== (i << 16) >>> 0) expect.fail(`BF16 0x${i.toString(16)} changed its bits`);
    }
  });

  it("writes the reference layout: 8-aligned header padded with spaces, F32 first, names sorted", () => {
    const bytes = writeSafetensors(
      [
        { name: "z16", dtype: "F16", shape: [1], data: [1] },
        { name: "b32", dtype: "F32", shape: [1], data: [1] },
        { name: "a32", dtype: "F32", shape: [1], data: [1] },
        { name: "bf", dtype: "BF16", shape: [1], data: [1] },
      ],
      { format: "pt" },
    );
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(header.trimEnd()).toBe(
      '{"__metadata__":{"format":"pt"},' +
        '"a32":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
        '"b32":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},' +
        '"bf":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},' +
        '"z16":{"dtype":"F16","shape":[1],"data_offsets":[10,12]}}',
    );
    expect(/^ *$/.test(header.slice(header.trimEnd().length))).toBe(true);
  });

  it("round-trips metadata, zero-element and scalar tensors, and an empty file", () => {
    const st = roundTrip(
      [
        { name: "empty", dtype: "F32", shape: [0], data: [] },
        { name: "empty2", dtype: "F16", shape: [2, 0], data: [] },
        { name: "scalar", dtype: "F32", shape: [], data: [7] },
      ],
      { format: "pt", __proto__: "x", note: "ünïcødé ✓" },
    );
    expect(st.tensors.get("empty")?.data.length).toBe(0);
    expect(st.tensors.get("empty2")?.shape).toEqual([2, 0]);
    expect(st.tensors.get("scalar")?.shape).toEqual([]);
    expect(st.tensors.get("scalar")?.data[0]).toBe(7);
    expect(st.metadata?.note).toBe("ünïcødé ✓");
    expect(Object.keys(st.metadata ?? {})).toContain("format");
    const empty = roundTrip([]);
    expect(empty.tensors.size).toBe(0);
    expect(empty.metadata).toBeNull();
  });

  it("refuses to write what it could not read back", () => {
    const one = (t: Partial<WritableTensor>) => () =>
      writeSafetensors([{ name: "w", dtype: "F32", shape: [1], data: [1], ...t }]);
    expect(one({ shape: [2] })).toThrow(/"w": shape \[2\] holds 2 elements but data has 1/);
    expect(one({ shape: [-1] })).toThrow(KilnError);
    expect(one({ name: "__metadata__" })).toThrow(/reserved/);
    expect(one({ name: "bad\uD800" })).toThrow(/lone surrogate/);
    const dup = { name: "w", dtype: "F32", shape: [1], data: [1] } as const;
    expect(() => writeSafetensors([dup, dup])).toThrow(/appears twice/);
  });
});

describe("parseSafetensors: conversions", () => {
  it("reads tensors whose data is unaligned in the file and in memory", () => {
    // A 9-byte header puts the data at file offset 17; the file itself sits at byteOffset 3.
    const header = `{"w":${entry("F32", [2], 0, 8)}}`.padEnd(9 + 32, " ");
    const file = build(header, bytesOf(new Float32Array([1.5, -2])));
    const host = new Uint8Array(file.length + 3);
    host.set(file, 3);
    const st = parseSafetensors(host.subarray(3), FILE);
    expectSameFloats(st.tensors.get("w")!.data, [1.5, -2]);
    // A Node Buffer, whose slice() is a view into a shared pool, not a copy.
    const pooled = Buffer.concat([Buffer.alloc(5), Buffer.from(file)]).subarray(5);
    expectSameFloats(parseSafetensors(pooled, FILE).tensors.get("w")!.data, [1.5, -2]);
  });

  it("converts F64 by rounding and refuses values beyond the f32 range", () => {
    const f64 = (v: number[]) =>
      build(`{"d":${entry("F64", [v.length], 0, 8 * v.length)}}`, bytesOf(new Float64Array(v)));
    expectSameFloats(parseSafetensors(f64([0.1, -Infinity]), FILE).tensors.get("d")!.data, [
      Math.fround(0.1),
      -Infinity,
    ]);
    expectFailure(f64([1, 1e300]), 'tensor "d"', "element 1 is 1e+300", "f32 range");
  });

  it("converts integer tensors whose values are exact f32, and refuses the rest", () => {
    const ints = (dtype: string, arr: ArrayBufferView & { length: number }) =>
      build(`{"i":${entry(dtype, [arr.length], 0, arr.byteLength)}}`, bytesOf(arr));
    const load = (b: Uint8Array) => parseSafetensors(b, FILE).tensors.get("i")!.data;
    expectSameFloats(load(ints("I64", new BigInt64Array([-5n, 0n, 1023n]))), [-5, 0, 1023]);
    expectSameFloats(load(ints("U64", new BigUint64Array([2n ** 63n]))), [2 ** 63]);
    expectSameFloats(load(ints("I32", new Int32Array([-(2 ** 24), 2 ** 24]))), [
      -(2 ** 24),
      2 ** 24,
    ]);
    expectSameFloats(load(ints("U16", new Uint16Array([65535]))), [65535]);
    expectSameFloats(load(ints("I16", new Int16Array([-32768]))), [-32768]);
    expectSameFloats(load(ints("I8", new Int8Array([-128, 127]))), [-128, 127]);
    expectSameFloats(load(ints("U8", new Uint8Array([0, 255]))), [0, 255]);
    expectSameFloats(load(ints("BOOL", new Uint8Array([0, 1]))), [0, 1]);
    expectFailure(
      ints("I32", new Int32Array([2 ** 24 + 1])),
      'tensor "i"',
      "16777217",
      "not exactly an f32",
    );
    expectFailure(
      ints("I64", new BigInt64Array([2n ** 60n + 1n])),
      'tensor "i"',
      "not exactly an f32",
    );
    expectFailure(ints("BOOL", new Uint8Array([2])), 'tensor "i"', "BOOL byte must be 0 or 1");
  });

  it("refuses 8-, 6- and 4-bit floats and complex numbers by name", () => {
    expectFailure(
      build(`{"q":${entry("F8_E4M3", [2], 0, 2)}}`, [1, 2]),
      'tensor "q"',
      "F8_E4M3 is not supported",
      "kiln loads",
    );
    expectFailure(
      build(`{"c":${entry("C64", [1], 0, 8)}}`, new Array(8).fill(0)),
      'tensor "c"',
      "C64",
    );
    expectFailure(build(`{"f":${entry("F4", [2], 0, 1)}}`, [0]), 'tensor "f"', "F4");
  });
});

describe("parseSafetensors: validation", () => {
  const w = (start = 0, end = 8, shape = [2], dtype = "F32") => entry(dtype, shape, start, end);
  const zeros = (n: number) => new Array<number>(n).fill(0);

  it("refuses a file shorter than the length prefix", () => {
    expectFailure(new Uint8Array(0), "0 bytes", "not a safetensors file");
    expectFailure(new Uint8Array([1, 2, 3]), "3 bytes");
  });

  it("checks the declared header length before reading anything, in 64 bits", () => {
    expectFailure(build("{}", [], 100_000_001n), "header length 100000001 exceeds");
    expectFailure(build("{}", [], 2n ** 64n - 1n), "18446744073709551615");
    expectFailure(build("{}", [], 2n ** 53n + 1n), "9007199254740993");
    expectFailure(
      build("{}", [], 100n),
      "header length 100 runs past the end of the file (10 bytes)",
    );
  });

  it("requires a UTF-8 JSON object header starting with '{'", () => {
    expectFailure(build(""), "starting with '{'");
    expectFailure(build(" {}"), "starting with '{'");
    expectFailure(build("[]"), "starting with '{'");
    expectFailure(build(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), "starting with '{'"); // BOM
    expectFailure(
      build(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])),
      "not valid UTF-8",
    );
    expectFailure(build('{"a":}'), "not valid JSON", "unexpected");
    expectFailure(build(`{"w":${w()},}`, zeros(8)), "not valid JSON");
    expectFailure(build("{}\0\0"), "not valid JSON", "after the end");
    expectFailure(build('{"w'), "not valid JSON", "unterminated string");
    expectFailure(build('{"\\ud800":1}'), "lone surrogate");
    expectFailure(build(`{"a":${"[".repeat(200_000)}`), "nested deeper than 128");
  });

  it("accepts an empty header, with spaces (or any JSON whitespace) after it", () => {
    expect(parseSafetensors(build("{}"), FILE).tensors.size).toBe(0);
    expect(parseSafetensors(build("{}      "), FILE).metadata).toBeNull();
    expect(parseSafetensors(build("{ }\n\t "), FILE).tensors.size).toBe(0);
  });

  it("requires each entry to be an object with a well-typed dtype, shape and data_offsets", () => {
    const one = (e: string) => build(`{"h.0.w":${e}}`, zeros(8));
    expectFailure(one("[1]"), 'tensor "h.0.w"', "must be an object", "got array");
    expectFailure(one('"F32"'), 'tensor "h.0.w"', "must be an object");
    expectFailure(one('{"shape":[2],"data_offsets":[0,8]}'), 'tensor "h.0.w": missing "dtype"');
    expectFailure(one('{"dtype":"F32","data_offsets":[0,8]}'), 'missing "shape"');
    expectFailure(one('{"dtype":"F32","shape":[2]}'), 'missing "data_offsets"');
    expectFailure(
      one('{"dtype":32,"shape":[2],"data_offsets":[0,8]}'),
      '"dtype" must be a string, got number 32',
    );
    expectFailure(
      one('{"dtype":"F31","shape":[2],"data_offsets":[0,8]}'),
      'tensor "h.0.w": unknown dtype "F31"',
    );
    expectFailure(one('{"dtype":"f32","shape":[2],"data_offsets":[0,8]}'), 'unknown dtype "f32"');
    expectFailure(
      one('{"dtype":"F32","shape":"2","data_offsets":[0,8]}'),
      '"shape" must be an array',
    );
    expectFailure(
      one('{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}'),
      "shape[0] is 2.0",
      "non-negative integer",
    );
    expectFailure(one('{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}'), "shape[0] is -2");
    expectFailure(one('{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}'), "shape[0] is 2e0");
    expectFailure(
      one('{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}'),
      "shape[0] must be a non-negative integer",
    );
    expectFailure(
      one('{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,8]}'),
      "larger than kiln can index",
    );
    expectFailure(
      one('{"dtype":"F32","shape":[2],"data_offsets":[0]}'),
      '"data_offsets" must be an array [start, end]',
    );
    expectFailure(
      one('{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}'),
      '"data_offsets" must be',
    );
    expectFailure(
      one('{"dtype":"F32","shape":[2],"data_offsets":{"0":0}}'),
      '"data_offsets" must be',
    );
    expectFailure(
      one('{"dtype":"F32","shape":[2],"data_offsets":["0",8]}'),
      "data_offsets[0] must be",
    );
    expectFailure(
      one('{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}'),
      "data_offsets[1] is 8.5",
    );
    expectFailure(
      one(`{"dtype":"F32","shape":[2],"data_offsets":[0,${"9".repeat(100_000)}]}`),
      "beyond 64 bits",
    );
    expectFailure(
      one('{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}'),
      "beyond 64 bits",
    );
  });

  it("ignores unknown fields in an entry, as the reference does", () => {
    const st = parseSafetensors(
      build(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":[]}}`, zeros(8)),
      FILE,
    );
    expect(st.tensors.get("w")?.shape).toEqual([2]);
  });

  it("detects element and byte count overflow instead of wrapping", () => {
    expectFailure(
      build(`{"big":${w(0, 8, [2 ** 40, 2 ** 40])}}`, zeros(8)),
      'tensor "big"',
      "[1099511627776,1099511627776]",
      "more elements than a 64-bit count",
    );
    expectFailure(
      build(`{"big":${w(0, 8, [2 ** 31, 2 ** 31], "F64")}}`, zeros(8)),
      'tensor "big"',
      "more bytes than a 64-bit size",
    );
    // Multiplication order matters in the reference too: a zero after the overflow does not save it.
    expectFailure(build(`{"big":${w(0, 0, [2 ** 40, 2 ** 40, 0])}}`), "more elements");
  });

  it("requires the byte length to match shape × dtype", () => {
    const e = expectFailure(
      build(`{"h.0.attn.c_attn.weight":${w(0, 6900, [24, 72])}}`, zeros(6900)),
    );
    expect(e.detail).toBe(
      'tensor "h.0.attn.c_attn.weight": shape [24,72] × F32 needs 6912 bytes but offsets give 6900',
    );
    expectFailure(build(`{"f":${w(0, 2, [3], "F4")}}`, zeros(2)), 'tensor "f"', "byte boundary");
  });

  it("requires the tensors to tile the data region exactly", () => {
    expectFailure(
      build(`{"w":${w(8, 4, [0])}}`, zeros(8)),
      'tensor "w": data_offsets [8, 4] end before they start',
    );
    expectFailure(
      build(`{"a":${w(0, 8)},"b":${w(4, 12)}}`, zeros(12)),
      'tensor "b": data_offsets [4, 12] overlap tensor "a" [0, 8]',
    );
    expectFailure(build(`{"a":${w(0, 8)},"b":${w(0, 8)}}`, zeros(8)), "overlap");
    expectFailure(
      build(`{"a":${w(0, 8)},"b":${w(12, 20)}}`, zeros(20)),
      'tensor "b"',
      'gap of 4 bytes after tensor "a"',
    );
    expectFailure(
      build(`{"a":${w(4, 12)}}`, zeros(12)),
      'tensor "a"',
      "first tensor must start at 0",
    );
    expectFailure(build(`{"a":${w(0, 8)},"e":${w(10, 10, [0])}}`, zeros(8)), 'tensor "e"', "gap");
    expectFailure(
      build(`{"a":${w(0, 16, [4])}}`, zeros(8)),
      'tensor "a"',
      "past the end of the file",
      "truncated",
    );
    expectFailure(build(`{"a":${w(0, 8)}}`, zeros(12)), "4 trailing bytes after the last tensor");
    expectFailure(
      build("{}", zeros(1)),
      "1 trailing byte after the last tensor (tensors cover 0 of 1",
    );
  });

  it("accepts zero-element tensors where they tile, and any order in the header", () => {
    const header = `{"b":${w(8, 16)},"z":${w(8, 8, [2, 0])},"a":${w(0, 8)},"z0":${w(16, 16, [0])}}`;
    const st = parseSafetensors(build(header, bytesOf(new Float32Array([1, 2, 3, 4]))), FILE);
    expectSameFloats(st.tensors.get("b")!.data, [3, 4]);
    expect(st.tensors.get("z")?.shape).toEqual([2, 0]);
    expect(st.tensors.get("z0")?.data.length).toBe(0);
  });

  it("refuses duplicate keys anywhere in the header", () => {
    expectFailure(build(`{"a":${w()},"a":${w()}}`, zeros(8)), 'tensor "a" appears twice');
    expectFailure(build(`{"__metadata__":{},"__metadata__":{}}`), "__metadata__ appears twice");
    expectFailure(
      build(`{"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, zeros(8)),
      'in tensor "a"',
      'duplicate key "dtype"',
    );
    expectFailure(
      build(`{"__metadata__":{"k":"1","k":"2"}}`),
      "in __metadata__",
      'duplicate key "k"',
    );
  });

  it("returns __metadata__ as string → string and never as a tensor", () => {
    const st = parseSafetensors(
      build(`{"__metadata__":{"format":"pt","__proto__":"p"},"w":${w()}}`, zeros(8)),
      FILE,
    );
    expect(st.tensors.has("__metadata__")).toBe(false);
    expect(st.metadata?.format).toBe("pt");
    expect(Object.getOwnPropertyDescriptor(st.metadata, "__proto__")?.value).toBe("p");
    expect(parseSafetensors(build('{"__metadata__":null}'), FILE).metadata).toBeNull();
    expectFailure(
      build('{"__metadata__":"pt"}'),
      "__metadata__ must be an object of strings, got string",
    );
    expectFailure(build('{"__metadata__":[]}'), "__metadata__ must be an object");
    expectFailure(
      build('{"__metadata__":{"n":1}}'),
      '__metadata__ "n" must be a string, got number 1',
    );
    expectFailure(
      build('{"__metadata__":{"n":{"deep":"x"}}}'),
      '__metadata__ "n" must be a string, got object',
    );
  });

  it("handles tensors named __proto__, constructor and toString as plain names", () => {
    const header = `{"__proto__":${w(0, 8)},"constructor":${w(8, 16)},"toString":${w(16, 24)}}`;
    const st = parseSafetensors(build(header, bytesOf(new Float32Array([1, 2, 3, 4, 5, 6]))), FILE);
    expect([...st.tensors.keys()].sort()).toEqual(["__proto__", "constructor", "toString"]);
    expectSameFloats(st.tensors.get("__proto__")!.data, [1, 2]);
    expectSameFloats(st.tensors.get("constructor")!.data, [3, 4]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("readSafetensorsFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "kiln-st-"));

  it("reads a file written by the writer", () => {
    const path = join(dir, "model.safetensors");
    writeFileSync(
      path,
      writeSafetensors([{ name: "w", dtype: "BF16", shape: [2], data: [1, -2] }]),
    );
    expectSameFloats(readSafetensorsFile(path).tensors.get("w")!.data, [1, -2]);
  });

  it("names a missing file or a directory", () => {
    const missing = join(dir, "nope.safetensors");
    expect(() => readSafetensorsFile(missing)).toThrow(
      new KilnError("safetensors", missing, "file not found"),
    );
    expect(() => readSafetensorsFile(dir)).toThrow(/is a directory/);
  });

  it("reads only the tensors a filter picks, after validating the whole header", () => {
    const path = join(dir, "two.safetensors");
    const bytes = writeSafetensors([
      { name: "a", dtype: "F32", shape: [2], data: [1, 2] },
      { name: "b", dtype: "F16", shape: [1], data: [3] },
    ]);
    writeFileSync(path, bytes);
    const st = readSafetensorsFile(path, (n) => n === "b");
    expect([...st.tensors.keys()]).toEqual(["b"]);
    expectSameFloats(st.tensors.get("b")!.data, [3]);
    // A trailing byte is refused even when no tensor is read.
    writeFileSync(path, new Uint8Array([...bytes, 0]));
    expect(() => readSafetensorsFile(path, () => false)).toThrow(/1 trailing byte/);
  });
});

describe("tensors larger than one read", () => {
  const n = READ_CHUNK_BYTES / 2 + 3; // F16: one whole piece and 6 bytes more
  const values = Array.from({ length: n }, (_, i) => (i % 2048) - 1024);

  it("converts F16 piece by piece, every element in its place", () => {
    const st = parseSafetensors(
      writeSafetensors([{ name: "h", dtype: "F16", shape: [n], data: values }]),
      FILE,
    );
    expectSameFloats(st.tensors.get("h")!.data, values);
  });

  it("names a bad element past the first piece by its index in the tensor", () => {
    const ints = new Int32Array(READ_CHUNK_BYTES / 4 + 10);
    ints[READ_CHUNK_BYTES / 4 + 7] = 2 ** 24 + 1;
    const bytes = build(`{"i":${entry("I32", [ints.length], 0, ints.byteLength)}}`, bytesOf(ints));
    expectFailure(bytes, 'tensor "i"', `element ${READ_CHUNK_BYTES / 4 + 7} is 16777217`);
  });
});

describe("properties", () => {
  const name = fc
    .string({ unit: "binary", maxLength: 12 })
    .filter((s) => s !== "__metadata__" && !/[\uD800-\uDFFF]/u.test(s));
  const shape = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 });
  const tensor = fc
    .record({
      name,
      shape,
      dtype: fc.constantFrom("F32" as const, "F16" as const, "BF16" as const),
    })
    .chain(({ name, shape, dtype }) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const value =
        dtype === "F32"
          ? fc.float()
          : fc.integer({ min: 0, max: 0xffff }).map(dtype === "F16" ? f16Value : bf16Value);
      return fc
        .array(value, { minLength: n, maxLength: n })
        .map((data) => ({ name, shape, dtype, data }));
    });
  const metadata = fc.option(fc.dictionary(name, fc.string()), { nil: undefined });

  it("every representable tensor list round-trips exactly", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(tensor, { selector: (t) => t.name, maxLength: 6 }),
        metadata,
        (tensors, meta) => {
          const st = parseSafetensors(writeSafetensors(tensors, meta), FILE);
          expect(st.tensors.size).toBe(tensors.length);
          for (const t of tensors) {
            const got = st.tensors.get(t.name)!;
            expect(got.dtype).toBe(t.dtype);
            expect(got.shape).toEqual(t.shape);
            expectSameFloats(got.data, t.data);
          }
          expect(st.metadata === null ? undefined : { ...st.metadata }).toEqual(meta);
        },
      ),
    );
  });

  const isKilnFailure = (bytes: Uint8Array): boolean => {
    try {
      parseSafetensors(bytes, FILE);
      return true;
    } catch (e) {
      return e instanceof KilnError && e.kind === "safetensors" && e.where === FILE;
    }
  };
  const valid = writeSafetensors(
    [
      { name: "wte", dtype: "F32", shape: [2, 3], data: [1, 2, 3, 4, 5, 6] },
      { name: "h.0.b", dtype: "F16", shape: [4], data: [0.5, -1, 65504, 2 ** -24] },
      { name: "z", dtype: "BF16", shape: [0], data: [] },
    ],
    { format: "pt" },
  );

  it("a corrupted byte never raises anything but a KilnError", () => {
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), (i, b) => {
        const bad = valid.slice();
        bad[i] = b;
        return isKilnFailure(bad);
      }),
      { numRuns: 2000 },
    );
  });

  it("reading the file gives what parsing its bytes gives: the same tensors or the same error", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-st-prop-"));
    const path = join(dir, "model.safetensors");
    const outcome = (read: () => unknown) => {
      try {
        return read();
      } catch (e) {
        return e instanceof KilnError ? e.detail : e;
      }
    };
    fc.assert(
      fc.property(
        fc.nat(valid.length - 1),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(valid.length),
        (i, b, cut) => {
          const bytes = valid.slice(0, Math.max(cut, 1));
          bytes[Math.min(i, bytes.length - 1)] = b;
          writeFileSync(path, bytes);
          const fromFile = outcome(() => readSafetensorsFile(path));
          const fromBytes = outcome(() => parseSafetensors(bytes, path));
          expect(fromFile).toEqual(fromBytes);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a truncated or extended file is refused with a KilnError", () => {
    const refused = (bytes: Uint8Array) => {
      expect(() => parseSafetensors(bytes, FILE)).toThrow(KilnError);
      return isKilnFailure(bytes);
    };
    for (let n = 0; n < valid.length; n++) expect(refused(valid.subarray(0, n))).toBe(true);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 16 }), (tail) =>
        refused(new Uint8Array([...valid, ...tail])),
      ),
    );
  });

  it("any JSON or text as a header never raises anything but a KilnError", () => {
    const text = fc.oneof(
      fc.json().map((j) => `{"t":${j}}`),
      fc.json().map((j) => `{"__metadata__":${j}}`),
      fc.json(),
      fc.string({ unit: "binary" }).map((s) => `{${s}`),
    );
    fc.assert(
      fc.property(text, fc.uint8Array({ maxLength: 16 }), (h, data) =>
        isKilnFailure(build(h, data)),
      ),
      { numRuns: 1000 },
    );
  });
});
