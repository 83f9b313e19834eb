// A matmul thread of kiln's CPU runtime (threads.ts starts it). Plain JavaScript: a worker does not
// get the TypeScript loader. It loads each generated module a job names with `require` (the same
// CommonJS file the main thread loaded), then claims chunks of the job's columns until none is
// left (claim.mjs), as the main thread does.
import { createRequire } from "node:module";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { parentPort, workerData } from "node:worker_threads";
import { runChunks } from "./claim.mjs";

// A job's arrays are views of the main thread's SharedArrayBuffers; this thread's views keep
// them alive until it collects garbage, which it seldom needs to (V8 does not count shared
// memory). So every GC_JOBS jobs it runs a young-generation collection (~0.1 ms), and a session
// the main thread dropped is freed by both threads (threads.ts, sharedAllocator).
const GC_JOBS = 16;
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");
let jobs = 0;

// A kernel is warmed up here before this thread takes any of its columns: cold code (before V8
// has optimized it) runs tens of times slower, and a thread that waits for a cold chunk waits
// longer than the whole job takes it. On a job for a kernel that is not warm yet, this thread
// takes no chunk (the others do the whole job) and runs the kernel a few times on its first
// WARM_COLUMNS columns into an output of its own, which nobody reads, timing each run: the
// kernel is warm once a run is within WARM_SPREAD of the fastest and WARM_RUNS have been made.
const WARM_RUNS = 12;
const WARM_PER_JOB = 4;
const WARM_SPREAD = 1.25;
const WARM_COLUMNS = 12; // a pass of the one-row kernel (4 panels of 3 columns)
const WARM_MAX = 1 << 22; // the largest output made for it (elements)
const warmth = new Map();

const require = createRequire(import.meta.url);
const { claim, state, errors } = workerData;
const modules = new Map();

function kernelOf(path, name) {
  let m = modules.get(path);
  if (m === undefined) {
    m = require(path);
    modules.set(path, m);
  }
  const k = m[name];
  if (typeof k !== "function") throw new Error(`${path} has no kernel ${name}`);
  return k;
}

parentPort.on("message", (job) => {
  work(job);
  if (++jobs % GC_JOBS === 0) gc({ type: "minor" });
});

function work(job) {
  const { gen, path, name, args, width, n, total, warmup } = job;
  if (Atomics.load(claim, 0) >> 32n !== BigInt(gen)) return; // a job that is over
  let kernel;
  try {
    kernel = kernelOf(path, name);
  } catch (e) {
    errors.postMessage({ gen, error: String(e?.stack ?? e) }); // claims nothing: the others do it
    return;
  }
  const key = `${path}\n${name}`;
  let w = warmth.get(key);
  if (w === undefined) warmth.set(key, (w = { runs: 0, best: Infinity, warm: false }));
  if (warmup && !w.warm) return warm(w, kernel, args, n);
  runChunks(claim, state, gen, total, (c) => {
    try {
      kernel(...args, c * width, Math.min(n, (c + 1) * width));
    } catch (e) {
      Atomics.store(state, 1, 1);
      errors.postMessage({ gen, error: String(e?.stack ?? e) });
    }
  });
}

/** Runs the kernel on its first columns into a private output, timed (the job's args end with
 *  out, out_off, M): its reads of shared memory may see other threads' writes; the result is
 *  dropped. */
function warm(w, kernel, args, n) {
  const m = args[args.length - 1];
  if (typeof m !== "number" || m * n > WARM_MAX) return;
  const own = [...args];
  own[own.length - 3] = new Float32Array(m * n);
  own[own.length - 2] = 0;
  for (let i = 0; i < WARM_PER_JOB && !w.warm; i++) {
    const t = performance.now();
    try {
      kernel(...own, 0, Math.min(n, WARM_COLUMNS));
    } catch {
      return; // a warm-up that failed changes nothing: the job itself is the other threads'
    }
    const ms = performance.now() - t;
    w.best = Math.min(w.best, ms);
    w.warm = ++w.runs >= WARM_RUNS && ms <= WARM_SPREAD * w.best;
  }
}
