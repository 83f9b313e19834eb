/** Where the time of a short `kiln generate` goes: loading a checkpoint, making the ts runner, a
 *  cold prefill (emitting or loading the module, packing the weights, the kernels' first runs)
 *  and each decoding step after it, in milliseconds, in one process.
 *
 *    node --import tsx/esm bench/decode-steps.ts CHECKPOINT [--prompt 8] [--steps 24] [--threads N]
 *
 *  CHECKPOINT: a GPT-2 checkpoint folder (`npx tsx scripts/random-checkpoint.ts gpt2 /tmp/g124`
 *  writes GPT-2 small with random weights). *
 *  The first steps show the JIT warming the kernels up (and, with threads, the workers); the last
 *  ones the steady cost of a step. Not a figure of `kiln bench`: a tool to look with. */
import { parseArgs } from "node:util";
import { KilnError } from "../compiler/errors.ts";
import { loadCheckpoint } from "../runtime/checkpoint.ts";
import { makeRunner } from "../runtime/runner.ts";

/** A usage or input mistake: one line on stderr, exit status 2. */
function stop(message: string): never {
  process.stderr.write(`bench/decode-steps.ts: ${message}\n`);
  process.exit(2);
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        prompt: { type: "string", default: "8" },
        steps: { type: "string", default: "24" },
        threads: { type: "string" },
      },
    });
  } catch (e) {
    return stop(e instanceof Error ? e.message : String(e));
  }
})();
const dir = positionals[0];
if (!dir) stop("usage: bench/decode-steps.ts CHECKPOINT [--prompt N] [--steps N] [--threads N]");
const count = (s: string, what: string) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) stop(`--${what}: ${s} is not a whole number ≥ 1`);
  return n;
};
const promptLength = count(values.prompt, "prompt");
const steps = count(values.steps, "steps");
const threads = values.threads === undefined ? undefined : count(values.threads, "threads");

let t = performance.now();
const lap = (): number => {
  const now = performance.now();
  const ms = now - t;
  t = now;
  return Math.round(ms);
};
let ckpt: ReturnType<typeof loadCheckpoint>;
try {
  ckpt = loadCheckpoint(dir);
} catch (e) {
  if (e instanceof KilnError) stop(e.message);
  throw e;
}
const loadMs = lap();
const runner = await makeRunner(ckpt, "ts", threads === undefined ? {} : { threads });
const runnerMs = lap();
if (runner.model.kind !== "gpt2" || !runner.prefill)
  stop(`${dir}: a GPT-2 checkpoint (a decoder with a KV cache) is what this times`);
const vocab = runner.model.config.vocab_size;
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + 1) % vocab);
const decoding = await runner.prefill(prompt);
const prefillMs = lap();
const stepMs: number[] = [];
for (let i = 0; i < steps; i++) {
  await decoding.step([(i * 104729 + 3) % vocab]);
  stepMs.push(lap());
}
console.log(`load ${loadMs} ms, runner ${runnerMs} ms, prefill of ${promptLength} ${prefillMs} ms`);
console.log(`steps (ms): ${stepMs.join(" ")}`);
