/** The generated module's `Threads` in Node: big matmuls share their output columns with
 *  worker_threads over SharedArrayBuffer.
 *
 *  - Memory: `buffer(bytes)` is a SharedArrayBuffer. A session made with threads keeps its arena,
 *    outputs and packed weights there (and the params its shared kernels read), so every thread
 *    sees the same arrays; no data is copied per call.
 *  - A call: `matmul(kernel, name, args, n, cols, macs)` cuts the columns into chunks at panel
 *    boundaries (about CHUNKS_PER_THREAD per thread), posts the job to each worker, and claims
 *    chunks itself. Claims go through one shared word (the job's generation and the next chunk,
 *    compare-and-swap), so a worker that wakes late takes what is left, a worker that never
 *    wakes costs nothing, and a message from an older job claims nothing. The call returns when
 *    every chunk is done. Each column is computed by the same code on every thread, so the
 *    result is bit-for-bit the single-threaded one.
 *  - A kernel's first WARM_CALLS calls, work under MIN_MACS multiply-adds, and calls with an array
 *    not in shared memory run on the calling thread alone; a worker warms a kernel up before it
 *    takes any of its columns (worker.mjs).
 *  - The workers (worker.mjs, plain JavaScript) load the same module file with `require` and call
 *    its export `name`; they are unref'd, so they never keep the process alive.
 *
 *  The count is `KILN_THREADS` when set (1: no workers), else the machine's available
 *  parallelism. On the 2-core machines this was written on, one worker made decoding's LM head
 *  (1×768·768×50257) about 1.6× faster when the other core was idle. */
import { availableParallelism } from "node:os";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { DEFAULT_SCHEDULE } from "../../compiler/codegen/ts/matmul.ts";
import { fail } from "../../compiler/errors.ts";
import {
  MessageChannel,
  receiveMessageOnPort,
  Worker,
  type MessagePort,
} from "node:worker_threads";
import { runChunks } from "./claim.mjs";
import type { Threads } from "./module.ts";

/** Below this many multiply-adds (~0.3 ms here) a call runs on one thread: handing out chunks
 *  and waking a worker would cost more than it saves. */
export const MIN_MACS = 1 << 19;

/** A kernel's first calls run on the calling thread alone. V8 compiles a hot function on a
 *  background thread: with the other core busy with a worker running the same cold code, a
 *  one-shot `kiln forward` of GPT-2 small took 8.4 s instead of 4.7 s. A kernel called again
 *  is offered to the workers from its WARM_CALLS + 1st call on; they warm it up before they take
 *  columns (worker.mjs). Calls are counted per function: the layers of a transformer share
 *  theirs (compiler/codegen/ts/shared-code.ts), so a 12-layer forward already offers its later
 *  layers' matmuls (it took 5.0–5.2 s with threads or without, GPT-2 small, 8 tokens). */
const WARM_CALLS = 4;

/** Chunks per thread: more balance the load when a thread is slowed, fewer cost less to hand out. */
const CHUNKS_PER_THREAD = 8;

/** The least work of a chunk: each call of a kernel copies its rows of a and allocates its
 *  scratch, so a one-row matmul cut into 12-column chunks spent about as long on that as on its
 *  products (GPT-2 small decoding on two threads was slower than on one). */
const MIN_CHUNK_MACS = 1 << 17;

/** The one-row kernel walks this many panels per pass: chunks are whole multiples of it, so no
 *  pass is cut. */
const SPAN = DEFAULT_SCHEDULE.span;

/** How long a call waits for a claimed chunk before it gives up (a worker that died). */
const STALL_MS = 60_000;

/** Shared bytes allocated between two collections (sharedAllocator): at 64 MB `kiln generate`
 *  of GPT-2 small peaked at 1.92× its checkpoint, at 32 MB 1.84–1.87×. */
const GC_BYTES = 32 << 20;

/** V8 (Node 20) does not count SharedArrayBuffer memory towards when to collect garbage: 100
 *  dropped 8 MB SharedArrayBuffers stayed resident (840 MB; as ArrayBuffers: 81 MB), and packing
 *  a 124M-parameter model into shared memory left the dropped originals alive too (peak RSS 2.4×
 *  the checkpoint instead of 1.8×). So the shared allocator collects after every GC_BYTES, with
 *  the `gc` that --expose-gc makes (set at run time, as Jest does; a full collection of this
 *  heap takes a few ms). */
function sharedAllocator(): (bytes: number) => SharedArrayBuffer {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  let pending = 0;
  return (bytes) => {
    pending += bytes;
    if (pending >= GC_BYTES) {
      gc();
      pending = bytes;
    }
    return new SharedArrayBuffer(bytes);
  };
}

type Kernel = (...args: readonly (Float32Array | number)[]) => void;

/** The job a worker gets (worker.mjs reads it). */
export interface Job {
  readonly gen: number;
  readonly path: string;
  readonly name: string;
  /** The kernel's arguments, ending with out, out_off, M (worker.mjs's warm-up relies on it). */
  readonly args: readonly (Float32Array | number)[];
  /** Columns per chunk (a multiple of the panel width). */
  readonly width: number;
  readonly n: number;
  readonly total: number;
  /** Whether the worker warms the kernel up before it takes columns (worker.mjs). */
  readonly warmup: boolean;
}

/** The threads of this process: the workers and the words they share. */
interface Pool {
  readonly workers: readonly Worker[];
  /** [generation << 32 | next chunk]: the claim word. */
  readonly claim: BigInt64Array;
  /** [chunks done, a chunk failed]. */
  readonly state: Int32Array;
  /** Where workers post their errors (read synchronously after each call). */
  readonly errors: MessagePort;
  gen: number;
}

/** The process's pools, by thread count (one per count asked for), and its shared allocator. */
const pools = new Map<number, Pool>();
let allocate: ((bytes: number) => SharedArrayBuffer) | undefined;

/** The number of threads kiln uses (this one included). */
export function threadCount(): number {
  const env = process.env.KILN_THREADS;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1)
      fail("usage", "KILN_THREADS", `${JSON.stringify(env)} is not a whole number of threads ≥ 1`);
    return n;
  }
  return availableParallelism();
}

function startPool(count: number): Pool {
  const claim = new BigInt64Array(new SharedArrayBuffer(8));
  const state = new Int32Array(new SharedArrayBuffer(8));
  const { port1, port2 } = new MessageChannel();
  const workers = Array.from({ length: count - 1 }, () => {
    // execArgv []: not the parent's flags (an `--import` of a .ts file would fail there; the
    // worker is plain JavaScript and needs no loader)
    const w = new Worker(new URL("./worker.mjs", import.meta.url), {
      workerData: { claim, state, errors: port2 },
      transferList: [port2],
      execArgv: [],
    });
    // A worker that failed to start or died claims nothing more: the calling thread does the
    // chunks (one it held when it died is reported after STALL_MS).
    w.on("error", () => {});
    w.unref();
    return w;
  });
  port1.unref();
  return { workers, claim, state, errors: port1, gen: 0 };
}

const isShared = (a: Float32Array | number): boolean =>
  typeof a === "number" || a.buffer instanceof SharedArrayBuffer;

/** For tests: share every call, or leave every chunk to the workers. */
export interface ThreadOptions {
  /** The least work (multiply-adds) that is shared (default MIN_MACS). */
  readonly minMacs?: number;
  /** Whether the calling thread claims chunks too (default true; false: workers do them all). */
  readonly callerWorks?: boolean;
  /** Calls of each kernel run on the calling thread alone (default WARM_CALLS). */
  readonly warmCalls?: number;
  /** Whether workers warm a kernel up before they take its columns (default true; worker.mjs). */
  readonly workerWarmup?: boolean;
}

/** Threads for the module loaded from `path` (the same file the workers load), or undefined
 *  when there is one thread. */
export function cpuThreads(
  path: string,
  count = threadCount(),
  {
    minMacs = MIN_MACS,
    callerWorks = true,
    warmCalls = WARM_CALLS,
    workerWarmup = true,
  }: ThreadOptions = {},
): Threads | undefined {
  if (count < 2) return undefined;
  const seen = new Map<string, number>(); // calls per kernel
  const pool = pools.get(count) ?? startPool(count);
  pools.set(count, pool);
  const buffer = (allocate ??= sharedAllocator());
  const matmul: Threads["matmul"] = (kernel, name, args, n, cols, macs) => {
    const run = kernel as unknown as Kernel;
    const calls = (seen.get(name) ?? 0) + 1;
    seen.set(name, calls);
    if (calls <= warmCalls || macs < minMacs || !args.every(isShared)) return run(...args);
    const panels = Math.ceil(n / cols);
    const threads = pool.workers.length + 1;
    const chunks = Math.min(threads * CHUNKS_PER_THREAD, Math.floor(macs / MIN_CHUNK_MACS));
    if (chunks < 2) return run(...args);
    const per = Math.ceil(panels / chunks / SPAN) * SPAN;
    const width = per * cols;
    const total = Math.ceil(n / width);
    if (total < 2) return run(...args);
    const gen = (pool.gen = (pool.gen + 1) % 2 ** 31);
    Atomics.store(pool.state, 0, 0);
    Atomics.store(pool.state, 1, 0);
    Atomics.store(pool.claim, 0, BigInt(gen) << 32n);
    const job: Job = { gen, path, name, args, width, n, total, warmup: workerWarmup };
    for (const w of pool.workers) w.postMessage(job);
    if (callerWorks)
      runChunks(pool.claim, pool.state, gen, total, (c) =>
        run(...args, c * width, Math.min(n, (c + 1) * width)),
      );
    const start = Date.now();
    for (let done = Atomics.load(pool.state, 0); done < total; done = Atomics.load(pool.state, 0)) {
      if (Date.now() - start > STALL_MS)
        throw new Error(`${name}: a matmul thread did not finish its columns in ${STALL_MS} ms`);
      Atomics.wait(pool.state, 0, done, 100);
    }
    // the errors this job's workers posted (one per failed chunk, or a module they could not
    // load); those of an earlier job that came late are dropped
    const errors: unknown[] = [];
    for (let m = receiveMessageOnPort(pool.errors); m; m = receiveMessageOnPort(pool.errors)) {
      const e = m.message as { gen: number; error: string };
      if (e.gen === gen) errors.push(e.error);
    }
    if (Atomics.load(pool.state, 1) !== 0 || errors.length)
      throw new Error(`${name} on a matmul thread: ${String(errors[0] ?? "failed")}`);
  };
  return { buffer, matmul };
}
