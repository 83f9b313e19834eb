/** readSafetensorsFile never holds the file whole: every read it makes (node:fs readSync, watched
 *  here) is at most one tensor long, the reads cover the file exactly once, and an F32 tensor is
 *  read straight into the buffer of its own array (one copy). It never calls readFileSync. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { READ_CHUNK_BYTES, readSafetensorsFile } from "../../runtime/safetensors.ts";
import { writeSafetensors, type WritableTensor } from "../../runtime/safetensors-write.ts";

interface Read {
  readonly buffer: ArrayBufferLike;
  readonly length: number;
  readonly position: number;
}

const watch = vi.hoisted(() => ({ reads: [] as Read[], wholeFileReads: [] as string[] }));

vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  return {
    ...fs,
    readSync(
      fd: number,
      buffer: NodeJS.ArrayBufferView,
      offset: number,
      length: number,
      position: number,
    ) {
      watch.reads.push({ buffer: buffer.buffer, length, position });
      return fs.readSync(fd, buffer, offset, length, position);
    },
    readFileSync(...args: Parameters<typeof fs.readFileSync>) {
      watch.wholeFileReads.push(String(args[0]));
      return fs.readFileSync(...args);
    },
  };
});

beforeEach(() => {
  watch.reads.length = 0;
  watch.wholeFileReads.length = 0;
});

const dir = mkdtempSync(join(tmpdir(), "kiln-st-file-"));

function fileOf(tensors: WritableTensor[]): { path: string; size: number } {
  const path = join(dir, `${tensors.map((t) => t.name).join("-")}.safetensors`);
  const bytes = writeSafetensors(tensors);
  writeFileSync(path, bytes);
  return { path, size: bytes.length };
}

const ramp = (n: number) => Array.from({ length: n }, (_, i) => i / 8);

describe("readSafetensorsFile", () => {
  it("reads tensor by tensor, each byte once, never the whole file", () => {
    const tensors: WritableTensor[] = [
      { name: "wte", dtype: "F32", shape: [64, 32], data: ramp(64 * 32) },
      { name: "wpe", dtype: "F32", shape: [16, 32], data: ramp(16 * 32) },
      { name: "h.0.w", dtype: "F32", shape: [32, 64], data: ramp(32 * 64) },
      { name: "h.1.w", dtype: "F32", shape: [32, 64], data: ramp(32 * 64) },
      { name: "h.0.b", dtype: "F16", shape: [96], data: ramp(96) },
    ];
    const { path, size } = fileOf(tensors);
    const st = readSafetensorsFile(path);

    expect(watch.wholeFileReads).toEqual([]);
    const largest = Math.max(...tensors.map((t) => t.data.length * (t.dtype === "F32" ? 4 : 2)));
    expect(largest).toBeLessThan(size / 2);
    for (const r of watch.reads) expect(r.length).toBeLessThanOrEqual(largest);
    // The reads tile the file: no byte read twice, none skipped.
    const spans = watch.reads
      .map((r) => [r.position, r.position + r.length])
      .sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [start, end] of spans) {
      expect(start).toBe(at);
      at = end;
    }
    expect(at).toBe(size);
    // Each F32 tensor's array is the buffer its bytes were read into.
    for (const t of tensors.filter((t) => t.dtype === "F32")) {
      const data = st.tensors.get(t.name)!.data;
      expect(
        watch.reads.some((r) => r.buffer === data.buffer && r.length === data.byteLength),
      ).toBe(true);
      expect(Array.from(data)).toEqual(t.data);
    }
  });

  it("converts a large F16 tensor through pieces of READ_CHUNK_BYTES, not a copy of its bytes", () => {
    const n = READ_CHUNK_BYTES; // 2 MiB of F16: two pieces
    const { path } = fileOf([
      { name: "big", dtype: "F16", shape: [n], data: new Array(n).fill(0.5) },
    ]);
    const data = readSafetensorsFile(path).tensors.get("big")!.data;
    expect(data.length).toBe(n);
    expect(data.every((v) => v === 0.5)).toBe(true);
    const dataReads = watch.reads.filter((r) => r.length > 8);
    expect(dataReads.length).toBeGreaterThan(2); // the header, then at least two pieces
    for (const r of dataReads) expect(r.length).toBeLessThanOrEqual(READ_CHUNK_BYTES);
  });
});
