/** runtime/cpu/threads.ts: matmuls shared with worker threads give bit-for-bit the
 *  single-threaded result, cover each column exactly once, and report a worker's failure. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { lower } from "../../../compiler/lower/lower.ts";
import { runPipeline } from "../../../compiler/passes/pipeline.ts";
import { loadCheckpoint } from "../../../runtime/checkpoint.ts";
import { modulePath } from "../../../runtime/cpu/load.ts";
import type { Output, Tensor } from "../../../runtime/cpu/module.ts";
import { cpuThreads, threadCount } from "../../../runtime/cpu/threads.ts";
import { decodingGraph } from "../../../runtime/runner.ts";
import { compile } from "../../compiler/codegen/ts/harness.ts";
import { expectTypedError, kiln } from "../../helpers/cli.ts";

const DIR = mkdtempSync(join(tmpdir(), "kiln-threads-test-"));
afterAll(() => rmSync(DIR, { recursive: true, force: true }));
const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");

/** A module file of kernels for the workers to load (CommonJS, like the generated ones). */
function kernels(name: string, source: string): string {
  const path = join(DIR, `${name}.cjs`);
  writeFileSync(path, source);
  return path;
}

const MARK = `
const { isMainThread } = require("node:worker_threads");
/** out[j] += 1 for the columns given; slow on the main thread so a worker gets chunks too. */
exports.mark = function mark(out, n, colFrom = 0, colTo = n) {
  if (isMainThread) { const end = Date.now() + 2; while (Date.now() < end); }
  for (let j = colFrom; j < colTo; j++) out[j] += 1;
};
/** out[out_off + j] += 1 for the columns given: the generated kernels' last parameters. */
exports.count = function count(out, out_off, M, colFrom, colTo) {
  if (colTo === undefined) { colFrom = 0; colTo = out.length - out_off; }
  for (let j = colFrom; j < colTo; j++) out[out_off + j] += 1;
};
/** Fails on a worker only. */
exports.boom = function boom(out, n, colFrom = 0, colTo = n) {
  if (!isMainThread) throw new Error("boom at column " + colFrom);
  const end = Date.now() + 20; while (Date.now() < end);
  for (let j = colFrom; j < colTo; j++) out[j] += 1;
};
`;

type Kernel = (...args: never[]) => void;

/** A kernel run on the calling thread that adds 1 to its columns and records each range it ran. */
function spyKernel(): { calls: [number, number][]; spy: Kernel } {
  const calls: [number, number][] = [];
  const spy = ((out: Float32Array, n: number, from = 0, to = n) => {
    calls.push([from, to]);
    for (let j = from; j < to; j++) out[j] += 1;
  }) as Kernel;
  return { calls, spy };
}

describe("cpuThreads", () => {
  const path = kernels("mark", MARK);

  it("is absent with one thread", () => {
    expect(cpuThreads(path, 1)).toBeUndefined();
  });

  it("covers every column exactly once, some on a worker", async () => {
    const threads = cpuThreads(path, 2, { minMacs: 0, warmCalls: 0, workerWarmup: false })!;
    const { mark } = (await import(path)) as { mark: Kernel };
    for (const n of [3, 12, 97, 1000, 50257]) {
      const out = new Float32Array(threads.buffer(n * 4));
      threads.matmul(mark, "mark", [out, n], n, 3, n * 1000);
      expect(out.every((x) => x === 1)).toBe(true);
    }
  });

  it("runs on the calling thread alone when an array is not shared or the work is small", async () => {
    const threads = cpuThreads(path, 2, { minMacs: 1000, warmCalls: 0, workerWarmup: false })!;
    const { calls, spy } = spyKernel();
    threads.matmul(spy, "mark", [new Float32Array(300), 300], 300, 3, 1e6);
    threads.matmul(spy, "mark", [new Float32Array(threads.buffer(1200)), 300], 300, 3, 999);
    expect(calls).toEqual([
      [0, 300],
      [0, 300],
    ]);
  });

  it("runs a kernel's first calls on the calling thread alone (warm-up), then shares them", () => {
    const threads = cpuThreads(path, 2, { minMacs: 0, warmCalls: 2, workerWarmup: false })!;
    const { calls, spy } = spyKernel();
    const out = new Float32Array(threads.buffer(3000 * 4));
    for (let i = 0; i < 3; i++) threads.matmul(spy, "mark", [out, 3000], 3000, 3, 1e9);
    expect(calls.slice(0, 2)).toEqual([
      [0, 3000],
      [0, 3000],
    ]);
    // the third call in chunks (those the worker did not take: it calls its own copy)
    expect(calls.slice(2).every(([a, b]) => b - a < 3000 && a % 3 === 0)).toBe(true);
    expect(out.every((x) => x >= 2)).toBe(true);
  });

  it("warms a kernel up on the worker without touching the job's output", async () => {
    const threads = cpuThreads(path, 2, { minMacs: 0, warmCalls: 0 })!;
    const { count } = (await import(path)) as { count: Kernel };
    const n = 30000;
    const out = new Float32Array(threads.buffer((n + 5) * 4));
    for (let i = 0; i < 40; i++) threads.matmul(count, "count", [out, 5, 1], n, 3, 1e9);
    expect(Array.from(out.subarray(0, 5))).toEqual([0, 0, 0, 0, 0]);
    expect(out.subarray(5).every((x) => x === 40)).toBe(true);
  });

  it("throws when a chunk fails on a worker", async () => {
    const threads = cpuThreads(path, 2, { minMacs: 0, warmCalls: 0, workerWarmup: false })!;
    const { boom } = (await import(path)) as { boom: Kernel };
    const out = new Float32Array(threads.buffer(3000 * 4));
    expect(() => threads.matmul(boom, "boom", [out, 3000], 3000, 3, 1e9)).toThrow(
      /boom on a matmul thread: .*boom at column/,
    );
    // the next call is not disturbed by the failed one
    const { mark } = (await import(path)) as { mark: Kernel };
    const ok = new Float32Array(threads.buffer(300 * 4));
    threads.matmul(mark, "mark", [ok, 300], 300, 3, 1e9);
    expect(ok.every((x) => x === 1)).toBe(true);
  });

  it("refuses a bad KILN_THREADS in the CLI with a typed error", async () => {
    const saved = process.env.KILN_THREADS;
    try {
      process.env.KILN_THREADS = "0";
      const r = await kiln("forward", join(FIXTURES, "gpt2-tiny"), "--tokens", "1,2");
      expectTypedError(r, "usage", "KILN_THREADS", "not a whole number of threads");
    } finally {
      if (saved === undefined) delete process.env.KILN_THREADS;
      else process.env.KILN_THREADS = saved;
    }
  });

  it("reads KILN_THREADS", () => {
    const saved = process.env.KILN_THREADS;
    try {
      process.env.KILN_THREADS = "3";
      expect(threadCount()).toBe(3);
      for (const bad of ["0", "-1", "1.5", "two"]) {
        process.env.KILN_THREADS = bad;
        expect(() => threadCount()).toThrow(/KILN_THREADS: .* is not a whole number of threads/);
      }
    } finally {
      if (saved === undefined) delete process.env.KILN_THREADS;
      else process.env.KILN_THREADS = saved;
    }
  });
});

describe("a generated session with threads", () => {
  it("gives the single-threaded outputs bit for bit (the worker's columns): run, then steps with the KV cache", () => {
    for (const fixture of ["gpt2-tiny", "seq2seq-tiny"]) {
      const ckpt = loadCheckpoint(join(FIXTURES, fixture));
      const program = lower(decodingGraph(runPipeline(ckpt.graph).graph));
      const mod = compile(program);
      const weights = (name: string) => ckpt.weights.get(name)?.data;
      // every matmul's columns computed by the worker, however small
      const threads = cpuThreads(modulePath(mod)!, 2, {
        minMacs: 0,
        callerWorks: false,
        warmCalls: 0,
        workerWarmup: false,
      })!;
      const one = mod.createSession(mod.load(weights));
      const two = mod.createSession(mod.load(weights, threads.buffer), threads);
      const feed = (tokens: number[], src: boolean): Tensor[] =>
        mod.model.inputs
          .filter((i) => src || i.phase === "step")
          .map((i) =>
            i.phase === "step"
              ? { shape: [tokens.length], data: tokens }
              : { shape: [5], data: [3, 1, 4, 1, 5] },
          );
      const outputs = (o: Output[]) => o.map((x) => Array.from(x.data));
      expect(outputs(two.run(feed([1, 2, 3, 4, 5], true)))).toEqual(
        outputs(one.run(feed([1, 2, 3, 4, 5], true))),
      );
      for (const t of [6, 7, 8])
        expect(outputs(two.step(feed([t], false)))).toEqual(outputs(one.step(feed([t], false))));
    }
  });
});
