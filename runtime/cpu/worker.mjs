// A matmul thread of kiln's CPU runtime (threads.ts starts it). Plain JavaScript: a worker does not
// get the TypeScript loader. It loads each generated module a job names with `require` (the same
// CommonJS file the main thread loaded), then claims chunks of the job's columns until none is
// left, exactly as threads.ts's runChunks does on the main thread.
import { createRequire } from "node:module";
import { parentPort, workerData } from "node:worker_threads";

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
  const { gen, path, name, args, width, n, total } = job;
  let kernel;
  try {
    kernel = kernelOf(path, name);
  } catch (e) {
    errors.postMessage(String(e?.stack ?? e)); // claims nothing: the other threads do the job
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
      errors.postMessage(String(e?.stack ?? e));
    } finally {
      Atomics.add(state, 0, 1);
      Atomics.notify(state, 0);
    }
  }
});
