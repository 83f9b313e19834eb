// A matmul thread of kiln's CPU runtime (threads.ts starts it). Plain JavaScript: a worker does not
// get the TypeScript loader. It loads each generated module a job names with `require` (the same
// CommonJS file the main thread loaded), then claims chunks of the job's columns until none is
// left, exactly as threads.ts's runChunks does on the main thread.
import { createRequire } from "node:module";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { parentPort, workerData } from "node:worker_threads";

// A job's arrays are views of the main thread's SharedArrayBuffers; this thread's views keep
// them alive until it collects garbage, which it seldom needs to (V8 does not count shared
// memory). So every GC_JOBS jobs it runs a young-generation collection (~0.1 ms), and a session
// the main thread dropped is freed by both threads (threads.ts, sharedAllocator).
const GC_JOBS = 16;
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");
let jobs = 0;

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
  const { gen, path, name, args, width, n, total } = job;
  if (Atomics.load(claim, 0) >> 32n !== BigInt(gen)) return; // a job that is over
  let kernel;
  try {
    kernel = kernelOf(path, name);
  } catch (e) {
    errors.postMessage({ gen, error: String(e?.stack ?? e) }); // claims nothing: the others do it
    return;
  }
  const base = BigInt(gen) << 32n;
  for (;;) {
    const v = Atomics.load(claim, 0);
    if (v >> 32n !== BigInt(gen)) return;
    const next = Number(v - base);
    if (next >= total) return;
    if (Atomics.compareExchange(claim, 0, v, v + 1n) !== v) continue;
    try {
      kernel(...args, next * width, Math.min(n, (next + 1) * width));
    } catch (e) {
      Atomics.store(state, 1, 1);
      errors.postMessage({ gen, error: String(e?.stack ?? e) });
    } finally {
      Atomics.add(state, 0, 1);
      Atomics.notify(state, 0);
    }
  }
}
